"""Every word the console shows, per language (pt-BR first, English per operator), and the
labels of the ledger's values (states, statuses, audit actions). Templates print these; they
never choose a label with a chain of ifs."""

from __future__ import annotations

from typing import Any

from ..ops.console import InboxStatus, MailStatus, SyncStatus

#: queue statuses -> words (pt-BR), keyed by the statuses themselves
_STATUS_WORDS = {InboxStatus.PENDING: "pendente", InboxStatus.APPLIED: "aplicado", InboxStatus.IGNORED: "ignorado",
                 InboxStatus.UNMAPPED: "sem produto", InboxStatus.FAILED: "falhou", InboxStatus.HELD: "retido",
                 SyncStatus.SYNCED: "sincronizada", SyncStatus.DEAD: "desistiu", MailStatus.SENT: "enviado",
                 MailStatus.SKIPPED: "pulado"}

TEXT: dict[str, dict[str, str]] = {
    "pt-BR": {
        "title": "iptvsync", "painel": "Painel", "assinaturas": "Assinaturas", "postbacks": "Postbacks",
        "registro": "Registro", "operadores": "Operadores", "sair": "Sair", "entrar": "Entrar",
        "usuario": "Usuário", "senha": "Senha", "codigo": "Código do autenticador (6 dígitos)",
        "login_title": "Entrar no painel", "totp_title": "Segundo fator", "bad_login": "Usuário ou senha incorretos.",
        "bad_code": "Código incorreto ou já usado.", "throttled": "Muitas tentativas. Tente de novo em {s} s.",
        "totp_required": "Este operador precisa de TOTP: peça a quem instala `iptvsync admin user totp`.",
        "expired": "Sua sessão terminou. Entre de novo.",
        "today": "Hoje", "7d": "7 dias", "30d": "30 dias", "sales": "Vendas", "activations": "Ativações",
        "renewals": "Renovações", "cancellations": "Cancelamentos", "refunds": "Reembolsos",
        "active_lines": "Linhas ativas", "expiring_3d": "Vencem em 3 dias", "expiring_7d": "Vencem em 7 dias",
        "attention": "Precisa de atenção", "nothing": "Nada.", "panels": "Painéis IPTV",
        "receiver": "Recebimento", "last_postback": "Último postback", "rejections_today": "Recusados hoje",
        "last_run": "Último process", "never": "nunca", "dead_subs": "Linhas com falha no painel",
        "dead_emails": "E-mails com falha", "held_inbox": "Postbacks com falha, sem produto ou retidos",
        "retry": "Tentar de novo", "search": "Buscar", "search_hint": "e-mail, nome, venda, assinatura ou usuário",
        "state": "Situação", "product": "Produto", "any": "todas", "filter": "Filtrar", "more": "Mais antigos",
        "email": "E-mail", "name": "Nome", "paid_until": "Pago até", "access_until": "Acesso até",
        "username": "Usuário da linha", "password": "Senha da linha", "reveal": "Mostrar senha",
        "key": "Chave", "sync": "Painel", "timeline": "Linha do tempo", "when": "Quando", "what": "O quê",
        "who": "Quem", "detail": "Detalhes", "actions": "Ações", "reason": "Motivo (vai para o registro)",
        "days": "Dias", "kind": "E-mail", "immediately": "Cortar o acesso agora", "confirm": "Confirmar",
        "cancel_back": "Voltar", "confirm_title": "Confirmar: {action}", "subscription": "Assinatura",
        "new_sub": "Nova assinatura (cortesia)", "status": "Situação", "event": "Evento", "sale": "Venda",
        "received": "Recebido", "body": "Corpo (chaves apagadas)", "attach_to": "Assinatura (id ou chave)",
        "action": "Ação", "actor": "Quem", "chain": "Cadeia de hashes", "chain_ok": "íntegra até o registro {id}"
        " ({rows} linhas), verificada {at}", "chain_never": "ainda não verificada", "verify": "Verificar agora",
        "chain_broken": "QUEBRADA no registro {id}", "role": "Papel", "totp": "TOTP", "sessions": "Sessões",
        "add_operator": "Novo operador", "remove": "Remover", "end_sessions": "Encerrar sessões",
        "language": "Idioma", "yes": "sim", "no": "não", "error_title": "Algo deu errado",
        "error_text": "O erro foi registrado com o código abaixo.", "forbidden": "Seu papel não permite isso.",
        "not_found": "Não encontrado.", "not_allowed": "Método não permitido.", "bad_request": "Pedido inválido.",
        "csrf": "Formulário expirado ou de outra origem. Volte e tente de novo.", "done": "Feito.",
        "results": "Resultados", "no_results": "Nada encontrado.", "client": "Endereço", "buyer": "Comprador",
        "error_id": "Código do erro", "back": "Voltar ao painel", "ok_added": "Nada mudou: já feito antes.",
        "synced_lines": "Em dia", "last_sync": "Última sincronização",
        "last_panel_failure": "Última falha", "status_notes": "O que `iptvsync status` diz:",
        "check_panels": "Verificar painéis agora (chave, créditos, login)", "pending_lines": "Na fila",
        "dead_lines": "Com falha",
        "health": "Saúde (última verificação)", "credits": "Créditos", "not_checked": "ainda não verificado",
        "low_credits": "Poucos créditos (aviso em {n} ou menos): compre mais antes que novas linhas falhem.",
    },
    "en": {
        "title": "iptvsync", "painel": "Dashboard", "assinaturas": "Subscriptions", "postbacks": "Postbacks",
        "registro": "Audit log", "operadores": "Operators", "sair": "Log out", "entrar": "Log in",
        "usuario": "User", "senha": "Password", "codigo": "Authenticator code (6 digits)",
        "login_title": "Log in", "totp_title": "Second factor", "bad_login": "Wrong user or password.",
        "bad_code": "Wrong or already used code.", "throttled": "Too many attempts. Try again in {s} s.",
        "totp_required": "This operator needs TOTP: ask the installer for `iptvsync admin user totp`.",
        "expired": "Your session ended. Log in again.",
        "today": "Today", "7d": "7 days", "30d": "30 days", "sales": "Sales", "activations": "Activations",
        "renewals": "Renewals", "cancellations": "Cancellations", "refunds": "Refunds",
        "active_lines": "Active lines", "expiring_3d": "Expiring in 3 days", "expiring_7d": "Expiring in 7 days",
        "attention": "Needs attention", "nothing": "Nothing.", "panels": "IPTV panels",
        "receiver": "Receiver", "last_postback": "Last postback", "rejections_today": "Refused today",
        "last_run": "Last process", "never": "never", "dead_subs": "Lines failed on the panel",
        "dead_emails": "Failed emails", "held_inbox": "Failed, unmapped or held postbacks",
        "retry": "Retry", "search": "Search", "search_hint": "email, name, sale, subscription or username",
        "state": "State", "product": "Product", "any": "any", "filter": "Filter", "more": "Older",
        "email": "Email", "name": "Name", "paid_until": "Paid until", "access_until": "Access until",
        "username": "Line username", "password": "Line password", "reveal": "Reveal password",
        "key": "Key", "sync": "Panel", "timeline": "Timeline", "when": "When", "what": "What",
        "who": "Who", "detail": "Details", "actions": "Actions", "reason": "Reason (goes to the audit log)",
        "days": "Days", "kind": "Email", "immediately": "Cut access now", "confirm": "Confirm",
        "cancel_back": "Back", "confirm_title": "Confirm: {action}", "subscription": "Subscription",
        "new_sub": "New subscription (gift)", "status": "Status", "event": "Event", "sale": "Sale",
        "received": "Received", "body": "Body (keys blanked)", "attach_to": "Subscription (id or key)",
        "action": "Action", "actor": "Who", "chain": "Hash chain", "chain_ok": "whole up to row {id}"
        " ({rows} rows), verified {at}", "chain_never": "not verified yet", "verify": "Verify now",
        "chain_broken": "BROKEN at row {id}", "role": "Role", "totp": "TOTP", "sessions": "Sessions",
        "add_operator": "New operator", "remove": "Remove", "end_sessions": "End sessions",
        "language": "Language", "yes": "yes", "no": "no", "error_title": "Something went wrong",
        "error_text": "The error was logged with the id below.", "forbidden": "Your role does not allow this.",
        "not_found": "Not found.", "not_allowed": "Method not allowed.", "bad_request": "Bad request.",
        "csrf": "The form expired or came from elsewhere. Go back and try again.", "done": "Done.",
        "results": "Results", "no_results": "Nothing found.", "client": "Address", "buyer": "Buyer",
        "error_id": "Error id", "back": "Back to the dashboard", "ok_added": "Nothing changed: done before.",
        "synced_lines": "In sync", "last_sync": "Last sync",
        "last_panel_failure": "Last failure", "status_notes": "What `iptvsync status` says:",
        "check_panels": "Check the panels now (key, credits, login)", "pending_lines": "Queued", "dead_lines": "Failed",
        "health": "Health (last check)", "credits": "Credits", "not_checked": "not checked yet",
        "low_credits": "Low credits (warning at {n} or less): buy more before new lines fail.",
    },
}

#: the subscription actions, as buttons and confirmation titles
ACTIONS: dict[str, dict[str, str]] = {
    "pt-BR": {"extend": "Estender", "suspend": "Suspender", "resume": "Reativar", "cancel": "Cancelar",
              "resend": "Reenviar acesso", "retry": "Tentar de novo", "grant": "Conceder"},
    "en": {"extend": "Extend", "suspend": "Suspend", "resume": "Resume", "cancel": "Cancel",
           "resend": "Resend access", "retry": "Retry", "grant": "Grant"},
}

#: ledger values -> words: subscription states, queue statuses, roles
VALUES: dict[str, dict[str, str]] = {
    "pt-BR": {"active": "ativa", "grace": "em carência", "suspended": "suspensa", "disputed": "em disputa",
              "cancelled": "cancelada", "expired": "vencida", "refunded": "reembolsada", "unpaid": "não paga",
              "owner": "dono", "support": "suporte", "warn": "atenção", "fail": "falha",
              **{str(k): v for k, v in _STATUS_WORDS.items()}},
    "en": {},
}

#: audit actions and timeline events -> a sentence head (the raw name shows when unlisted)
EVENTS: dict[str, dict[str, str]] = {
    "pt-BR": {"charge.paid": "Pagamento aprovado", "charge.complete": "Pagamento concluído",
              "charge.refunded": "Reembolso", "charge.blocked": "Disputa (chargeback)",
              "charge.waiting": "Aguardando pagamento", "charge.cancelled": "Cobrança cancelada",
              "panel.created": "Linha criada no painel", "panel.updated": "Linha atualizada no painel",
              "panel.failed": "Falha no painel", "email.sent": "E-mail enviado", "email.failed": "E-mail falhou",
              "email.queued": "E-mail na fila", "email.resend": "Reenvio pedido", "grant.added": "Dias concedidos",
              "subscription.suspended": "Suspensa", "subscription.resumed": "Reativada",
              "subscription.cancelled": "Cancelada", "subscription.expired": "Venceu",
              "subscription.retry": "Nova tentativa", "password.revealed": "Senha mostrada",
              "inbox.attached": "Postback anexado", "outbox.pending": "E-mail aguardando",
              "outbox.failed": "E-mail falhou", "outbox.dead": "E-mail desistiu", "outbox.skipped": "E-mail pulado",
              "postback.waiting": "Postback: aguardando pagamento", "postback.approved": "Postback: aprovada",
              "postback.complete": "Postback: completa", "postback.cancelled": "Postback: cancelada",
              "postback.refunded": "Postback: devolvida (reembolso)", "postback.blocked": "Postback: bloqueada",
              "postback.sub_active": "Postback: assinatura ativa",
              "postback.sub_overdue": "Postback: assinatura inadimplente",
              "postback.sub_cancelled": "Postback: assinatura cancelada", "postback.ignored": "Postback: ignorado",
              "postback.unclassified": "Postback: não classificado", "admin.login": "Entrou no painel",
              "admin.logout": "Saiu do painel", "admin.login_failed": "Login recusado"},
    "en": {},
}


#: ``ops.operators.OperatorError`` codes -> the sentence (its ``values`` fill it); English is the CLI's own
OPERATOR_ERRORS: dict[str, dict[str, str]] = {
    "pt-BR": {"short_password": "A senha precisa de pelo menos {n} caracteres.",
              "no_operator": "Não existe o operador \"{name}\".",
              "bad_name": "Nome de operador inválido: \"{name}\". Use de 1 a 32 letras minúsculas, dígitos,"
                          " \".\", \"_\" ou \"-\".",
              "bad_role": "Papel inválido: \"{role}\" (dono ou suporte).",
              "bad_language": "Idioma inválido: \"{language}\" (pt-BR ou en).",
              "exists": "O operador \"{name}\" já existe (troque a senha com `iptvsync admin user passwd`).",
              "last_owner": "\"{name}\" é o último dono: adicione outro dono antes."},
    "en": {},
}


class Words(dict):
    """The operator's words; ``words.extend`` in a template, ``words.fmt("throttled", s=3)`` with values."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def fmt(self, name: str, **values: Any) -> str:
        return self[name].format(**values)


def words(language: str) -> Words:
    return Words(TEXT.get(language, TEXT["pt-BR"]))


def action_label(language: str, action: str) -> str:
    return ACTIONS.get(language, ACTIONS["pt-BR"]).get(action, action)


def value_label(language: str, value: Any) -> str:
    return VALUES.get(language, {}).get(str(value), str(value)) if value is not None else ""


def event_label(language: str, what: str) -> str:
    return EVENTS.get(language, {}).get(what, what)


def error_label(language: str, exc: Exception) -> str:
    """An ``OperatorError`` (or any error with ``code`` and ``values``) in ``language``; its own
    English text when the language or the code has no sentence."""
    text = OPERATOR_ERRORS.get(language, {}).get(getattr(exc, "code", ""))
    return text.format(**exc.values) if text else str(exc)
