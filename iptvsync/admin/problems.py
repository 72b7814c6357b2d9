"""``iptvsync status``'s problem lines in the operator's language, for the Painel.

``status`` (``ops/health.py``, ``ops/watch.py``, ``ops/notify.py``) writes its problems in
English for the CLI. The console recognises each one by its fixed words and renders it in
pt-BR with the same figures, ids, times and commands; what a line quotes from elsewhere (a
panel's or gateway's error, a held postback's reason) stays as it came. A line no pattern knows
shows in English, unchanged: tests/test_admin_problems.py holds a sample of every line those
modules can write and fails when one is added without its rendering here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..ops.console import InboxStatus

_AND = (" and ", " e ")
_MORE = (re.compile(r" and (\d+) more$"), r" e mais \1")


def _swap(*pairs: tuple[str, str]) -> Callable[[str], str]:
    def swap(text: str) -> str:
        for old, new in pairs:
            text = text.replace(old, new)
        return text
    return swap


def _ids(text: str) -> str:
    return _MORE[0].sub(_MORE[1], text)


_IN = _swap((" in ", " em "))
_ACKED = _swap(("last acknowledged send", "último envio confirmado"),
               ("no send acknowledged yet", "nenhum envio confirmado ainda"))
_NOT_THE_RECEIVER = {
    "a proxy refuses the probe (the shipped Caddy and nginx files answer /healthz to 127.0.0.1 only): leave"
    " [status] receiver_url empty to probe the receiver itself":
    "um proxy recusa a sonda (os arquivos do Caddy e do nginx que acompanham o iptvsync respondem /healthz só"
    " a 127.0.0.1): deixe [status] receiver_url vazio para sondar o próprio receptor",
    "a proxy cannot reach the receiver: is `serve` running? (systemctl status iptvsync-serve), then the proxy's"
    " error log": "um proxy não alcança o receptor: o `serve` está rodando? (systemctl status iptvsync-serve),"
    " depois o log de erros do proxy",
    "something other than the receiver answers there: check [status] receiver_url and the proxy":
    "outra coisa que não o receptor responde ali: confira [status] receiver_url e o proxy",
}

#: (the English line, with named groups; its pt-BR rendering; how some groups are rendered)
_PT: list[tuple[str, str, dict[str, Callable[[str], str]]]] = [
    (r"(?P<n>\d+) subscription\(s\) dead on the panel: `iptvsync subs list --dead`",
     "{n} assinatura(s) com falha definitiva no painel: `iptvsync subs list --dead`", {}),
    (r"(?P<what>.+?) failed for good or gave up \(subscriptions (?P<ids>[^)]*)\): why in `iptvsync subs show"
     r" (?P<first>\d+)`, send again with `iptvsync subs retry (?P=first)`",
     "{what} falharam de vez ou desistiram (assinaturas {ids}): o motivo em `iptvsync subs show {first}`,"
     " envie de novo com `iptvsync subs retry {first}`",
     {"what": _swap(("WhatsApp message(s)", "mensagem(ns) de WhatsApp"), ("email(s)", "e-mail(s)"), _AND)}),
    (r"(?P<counts>\d+ (?:failed|unmapped)(?: and \d+ (?:failed|unmapped))?) postback\(s\): (?P<hints>.+)",
     "Postbacks: {counts}: {hints}",
     {"counts": _swap((InboxStatus.FAILED, "com falha"), (InboxStatus.UNMAPPED, "sem produto"), _AND),
      "hints": _swap(_AND)}),
    (r"(?P<n>\d+) postback\(s\) held for an operator: (?P<reasons>.*)",
     "{n} postback(s) retido(s) à espera de um operador: {reasons}", {}),
    (r"oldest pending postback is from (?P<at>\S+): is cron running process\?",
     "o postback pendente mais antigo é de {at}: o cron está rodando o process?", {}),
    (r"a postback has waited (?P<n>\d+) min and `process` has not run since it came: is its timer \(or cron\)"
     r" running\?",
     "um postback espera há {n} min e o `process` não rodou desde que ele chegou: o timer (ou o cron) está"
     " rodando?", {}),
    (r"the last `process` run \((?P<at>[^)]*)\) failed: (?P<error>.*)",
     "a última execução do `process` ({at}) falhou: {error}", {}),
    (r"IPTVSYNC_SECRET_KEY is not set \((?P<env>[^)]*)\) but the ledger holds encrypted panel passwords: put"
     r" back this install's \.env",
     "IPTVSYNC_SECRET_KEY não está definida ({env}), mas o ledger guarda senhas de painel cifradas: ponha de"
     " volta o .env desta instalação", {}),
    (r"subscription (?P<id>\d+): its panel password opens with no key of this install \((?P<keys>.*?)\): a"
     r" ledger from another install, or another \.env\? Put back the \.env that goes with this ledger",
     "assinatura {id}: a senha do painel não abre com nenhuma chave desta instalação ({keys}): um ledger de"
     " outra instalação, ou outro .env? Ponha de volta o .env que acompanha este ledger", {"keys": _IN}),
    (r"a rekey was interrupted \((?P<where>.*)\): run `iptvsync rekey` again",
     "um rekey foi interrompido ({where}): rode `iptvsync rekey` de novo", {"where": _IN}),
    (r"`serve` cannot start: (?P<error>.*)", "o `serve` não consegue iniciar: {error}", {}),
    (r"(?P<n>\d+) paid subscription\(s\) without a deliverable email, so the buyer never got the access data:"
     r" (?P<ids>.*?); contact the buyer \(`iptvsync subs show ID` has the sale\)",
     "{n} assinatura(s) paga(s) sem e-mail que se possa entregar, então o comprador nunca recebeu os dados de"
     " acesso: {ids}; fale com o comprador (`iptvsync subs show ID` mostra a venda)", {"ids": _ids}),
    (r"(?P<n>\d+) postback\(s\) no rule could classify \(a renamed Monetizze field\?\): (?P<ids>.*?); read them"
     r" with `iptvsync inbox show ID`, then `iptvsync inbox replay ID` once iptvsync reads them",
     "{n} postback(s) que nenhuma regra classificou (um campo da Monetizze renomeado?): {ids}; leia com"
     " `iptvsync inbox show ID` e, quando o iptvsync souber lê-los, `iptvsync inbox replay ID`", {"ids": _ids}),
    (r"(?P<n>\d+) requests to the postback URL refused in the last hour \((?P<refused>.*)\): Monetizze's"
     r" postbacks are being rejected, or the URL has leaked \(check the receiver's log; change \[receiver\] path"
     r" and MONETIZZE_CHAVE_UNICA if so\)",
     "{n} pedidos ao endereço de postback recusados na última hora ({refused}): os postbacks da Monetizze estão"
     " sendo recusados, ou o endereço vazou (veja o log do receptor; se vazou, troque [receiver] path e"
     " MONETIZZE_CHAVE_UNICA)", {}),
    (r"WhatsApp \((?P<gw>[^)]*)\) is disconnected since (?P<at>\S+): pair it again; messages wait meanwhile"
     r" \((?P<acked>.*?)\): (?P<failure>.*)",
     "o WhatsApp ({gw}) está desconectado desde {at}: pareie de novo; as mensagens esperam enquanto isso"
     " ({acked}): {failure}", {"acked": _ACKED}),
    (r"WhatsApp sends are failing \((?P<acked>.*?)\): (?P<failure>.*)",
     "os envios de WhatsApp estão falhando ({acked}): {failure}", {"acked": _ACKED}),
    (r"the receiver does not answer at (?P<url>\S+)/healthz \((?P<why>.*?)\): postbacks are refused; is `serve`"
     r" running\? \(systemctl status iptvsync-serve\)",
     "o receptor não responde em {url}/healthz ({why}): os postbacks são recusados; o `serve` está rodando?"
     " (systemctl status iptvsync-serve)",
     {"why": lambda why: re.sub(r"^no answer within (\S+)$", r"sem resposta em \1",
                                why.replace("nothing listens there", "nada escuta ali"))}),
    (r"the receiver at (?P<url>\S+)/healthz answers HTTP 503(?P<said>.*?): postbacks are refused meanwhile; see"
     r" journalctl -u iptvsync-serve",
     "o receptor em {url}/healthz responde HTTP 503{said}: os postbacks são recusados enquanto isso; veja"
     " journalctl -u iptvsync-serve", {}),
    (r"the receiver at (?P<url>\S+)/healthz answers HTTP (?P<status>\S+?)(?P<said>(?: \(.*\))?): is \[status\]"
     r" receiver_url right\? \(empty = \[receiver\] host and port\)",
     "o receptor em {url}/healthz responde HTTP {status}{said}: o [status] receiver_url está certo? (vazio ="
     " [receiver] host e port)", {}),
    (r"(?P<url>\S+)/healthz answers (?P<who>.*?), not the receiver: (?P<why>.*)",
     "{url}/healthz responde {who}, não o receptor: {why}",
     {"who": _swap((" from ", " de ")), "why": lambda why: _NOT_THE_RECEIVER.get(why, why)}),
    (r"a Monetizze postback was refused: wrong chave_unica \(last at (?P<at>[^)]*)\); copy the chave única from"
     r" Monetizze \(Ferramentas > Postback\) into MONETIZZE_CHAVE_UNICA in \.env, restart `serve`, then send"
     r" Monetizze's test postback",
     "um postback da Monetizze foi recusado: chave_unica errada (o último em {at}); copie a chave única da"
     " Monetizze (Ferramentas > Postback) para MONETIZZE_CHAVE_UNICA no .env, reinicie o `serve` e envie o"
     " postback de teste da Monetizze", {}),
    (r"(?P<n>\d+\+?) paid buyer\(s\) waiting over (?P<wait>\S+) for their line or access email \(subscriptions"
     r" (?P<ids>.*?); the first for (?P<min>\d+) min: (?P<why>.*)\); see `iptvsync subs show (?P<first>\d+)`",
     "{n} comprador(es) pago(s) esperando mais de {wait} pela linha ou pelo e-mail de acesso (assinaturas {ids};"
     " o primeiro há {min} min: {why}); veja `iptvsync subs show {first}`",
     {"ids": _ids, "why": _swap(("the line is not ready (", "a linha não está pronta ("),
                                ("the email is not sent (", "o e-mail não foi enviado ("),
                                ("(panel sync pending)", "(sincronização com o painel pendente)"),
                                ("(not tried yet)", "(ainda não tentado)"))}),
    (r"panel (?P<panel>\S+) makes real lines, but \[email\] backend is \"maildir\": buyers' access emails are"
     r" written to (?P<dir>.*?), never sent; set backend = \"smtp\" in (?P<path>.*?) \(`iptvsync mail test"
     r" YOU@…` checks it\)",
     "o painel {panel} cria linhas reais, mas o [email] backend é \"maildir\": os e-mails de acesso dos"
     " compradores são gravados em {dir}, nunca enviados; ponha backend = \"smtp\" em {path} (`iptvsync mail"
     " test YOU@…` testa, com o seu e-mail)", {}),
]
_COMPILED = {"pt-BR": [(re.compile(pattern, re.S), text, groups) for pattern, text, groups in _PT]}


def problem_label(language: str, line: str) -> str:
    """``line`` (one of ``status``'s problems) in ``language``; unchanged when unknown or English."""
    for pattern, text, groups in _COMPILED.get(language, ()):
        match = pattern.fullmatch(line)
        if match:
            values = {k: groups.get(k, str)(v) for k, v in match.groupdict().items()}
            return text.format(**values)
    return line
