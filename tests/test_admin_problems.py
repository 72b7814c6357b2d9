"""Issue 20: ``iptvsync status``'s problem lines on the Painel in the operator's language
(``iptvsync/admin/problems.py``). One sample of every line ``ops/health.py``, ``ops/watch.py``
and ``ops/notify.py`` can write today, built as those modules build them; a count of their
problem sites fails when a new line appears without a sample (and so without its pt-BR)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.admin import add_operator, login

from iptvsync.admin import create_app
from iptvsync.admin.problems import problem_label
from iptvsync.ledger.db import Ledger
from iptvsync.ops import health, watch
from iptvsync.ops import subs as ops_subs

OPS = Path(__file__).resolve().parent.parent / "iptvsync" / "ops"
ENV = "/srv/iptvsync/.env"

SAMPLES = [
    # ops/health.py, in the order of its problems.append calls
    "2 subscription(s) dead on the panel: `iptvsync subs list --dead`",
    f"{health._per_channel(2, 1)} failed for good or gave up (subscriptions 4, 9): why in `iptvsync subs show 4`,"
    " send again with `iptvsync subs retry 4`",
    "1 failed and 2 unmapped postback(s): `iptvsync inbox list --status failed` and"
    " `iptvsync inbox list --status unmapped`",
    "1 unmapped postback(s): `iptvsync inbox list --status unmapped`",
    "1 postback(s) held for an operator: inbox 7: recurring plan without assinatura",
    "oldest pending postback is from 2026-12-01T12:00:00Z: is cron running process?",
    "a postback has waited 12 min and `process` has not run since it came: is its timer (or cron) running?",
    "the last `process` run (2026-12-01T12:00:00Z) failed: LedgerError: disk full",
    f"IPTVSYNC_SECRET_KEY is not set ({ENV}) but the ledger holds encrypted panel passwords: put back this"
    " install's .env",
    f"subscription 12: its panel password opens with no key of this install (IPTVSYNC_SECRET_KEY,"
    f" IPTVSYNC_RETIRED_KEYS in {ENV}): a ledger from another install, or another .env? Put back the .env that"
    " goes with this ledger",
    f"a rekey was interrupted (IPTVSYNC_PENDING_KEY in {ENV}): run `iptvsync rekey` again",
    "`serve` cannot start: /etc/ssl/x.pem: no such file",
    f"7 paid subscription(s) without a deliverable email, so the buyer never got the access data:"
    f" {health._ids([1, 2, 3, 4, 5, 6, 7])}; contact the buyer (`iptvsync subs show ID` has the sale)",
    "2 postback(s) no rule could classify (a renamed Monetizze field?): 3, 8; read them with `iptvsync inbox"
    " show ID`, then `iptvsync inbox replay ID` once iptvsync reads them",
    "25 requests to the postback URL refused in the last hour (25× 403 bad key): Monetizze's postbacks are being"
    " rejected, or the URL has leaked (check the receiver's log; change [receiver] path and"
    " MONETIZZE_CHAVE_UNICA if so)",
    # ops/notify.py whatsapp_status
    "WhatsApp (evolution) is disconnected since 2026-12-01T12:00:00Z: pair it again; messages wait meanwhile"
    " (last acknowledged send 2026-11-30T10:00:00Z): session closed",
    "WhatsApp sends are failing (no send acknowledged yet): HTTP 500",
    # ops/watch.py
    "the receiver does not answer at http://127.0.0.1:8080/healthz (nothing listens there): postbacks are"
    " refused; is `serve` running? (systemctl status iptvsync-serve)",
    "the receiver does not answer at http://127.0.0.1:8080/healthz (no answer within 3s): postbacks are"
    " refused; is `serve` running? (systemctl status iptvsync-serve)",
    "the receiver at http://127.0.0.1:8080/healthz answers HTTP 503 (ledger locked): postbacks are refused"
    " meanwhile; see journalctl -u iptvsync-serve",
    "the receiver at https://pay.example.com/healthz answers HTTP 404: is [status] receiver_url right? (empty ="
    " [receiver] host and port)",
    watch._not_the_receiver("https://pay.example.com", "403", "Caddy"),
    watch._not_the_receiver("https://pay.example.com", "502", "nginx"),
    watch._not_the_receiver("https://pay.example.com", "418", ""),
    "a Monetizze postback was refused: wrong chave_unica (last at 2026-12-01T12:00:00Z); copy the chave única"
    " from Monetizze (Ferramentas > Postback) into MONETIZZE_CHAVE_UNICA in .env, restart `serve`, then send"
    " Monetizze's test postback",
    "3 paid buyer(s) waiting over 15m for their line or access email (subscriptions 1, 2, 3; the first for 40"
    " min: the line is not ready (panel sync pending)); see `iptvsync subs show 1`",
    "100+ paid buyer(s) waiting over 15m for their line or access email (subscriptions 1, 2, 3, 4, 5 and 95"
    " more; the first for 40 min: the email is not sent (not tried yet)); see `iptvsync subs show 1`",
    "panel main makes real lines, but [email] backend is \"maildir\": buyers' access emails are written to"
    " /srv/iptvsync/maildir, never sent; set backend = \"smtp\" in /srv/iptvsync/config.toml (`iptvsync mail"
    " test YOU@…` checks it)",
]


def test_every_problem_line_status_can_write_has_a_sample():
    """The sites that write a problem line, counted in the source: a new one needs a sample above
    and a rendering in admin/problems.py (then this count goes up by one)."""
    health_src = (OPS / "health.py").read_text("utf-8")
    sites = (health_src.count("problems.append(f") + len(re.findall(r'return \(?f"', health_src))
             + (OPS / "notify.py").read_text("utf-8").count("problems.append(f")
             + len(re.findall(r'return \(?f"(?!\{\'https)', (OPS / "watch.py").read_text("utf-8"))))
    assert sites == 23, "a problem line was added or removed in ops/: update SAMPLES and admin/problems.py"


@pytest.mark.parametrize("line", SAMPLES)
def test_every_problem_line_has_a_portuguese_rendering(line):
    pt = problem_label("pt-BR", line)
    assert pt != line, line
    # the English frame is gone; the figures and the commands stay
    for english in (" and ", " in /", "postbacks are refused", "waiting over", "failed for good", " is not "):
        assert english not in pt, pt
    for token in re.findall(r"`[^`]+`|\d+", line):
        assert token in pt, (token, pt)
    assert problem_label("en", line) == line


def test_an_unknown_line_shows_in_english_unchanged():
    assert problem_label("pt-BR", "something new happened") == "something new happened"


def test_the_painel_shows_the_problems_in_the_operators_language(cfg):
    ledger = Ledger(cfg.ledger_path)
    made, _ = ops_subs.grant(ledger, cfg, email="ana@example.com", product="145388", days=10, key="g1")
    ledger.conn.execute("UPDATE subscriptions SET sync_status = 'dead' WHERE id = ?", (made["id"],))
    ledger.conn.commit()
    ledger.close()
    add_operator(cfg, "maria", "owner")
    add_operator(cfg, "john", "owner", language="en")
    pt, en = create_app(cfg).test_client(), create_app(cfg).test_client()
    login(pt, "maria")
    login(en, "john")
    page = pt.get("/").get_data(as_text=True)
    assert "1 assinatura(s) com falha definitiva no painel: `iptvsync subs list --dead`" in page
    assert "dead on the panel" not in page and "(em inglês)" not in page
    assert "1 subscription(s) dead on the panel" in en.get("/").get_data(as_text=True)


# --- operator form errors ----------------------------------------------------------------------------------

def test_every_operator_error_has_a_code_with_a_portuguese_sentence():
    from iptvsync.admin.labels import OPERATOR_ERRORS

    source = (OPS / "operators.py").read_text("utf-8")
    raised = re.findall(r'OperatorError\(f?"(?:[^"\\]|\\.)*",\s*"(\w+)"', source)
    assert len(raised) == source.count("raise OperatorError(") == 7
    assert set(raised) == set(OPERATOR_ERRORS["pt-BR"])


def test_operator_form_errors_speak_the_operators_language(cfg):
    from support.admin import token

    add_operator(cfg, "maria", "owner")
    add_operator(cfg, "john", "owner", language="en")
    pt, en = create_app(cfg).test_client(), create_app(cfg).test_client()
    login(pt, "maria")
    login(en, "john")

    def add(client, **form):
        answer = client.post("/operadores/novo", data={"csrf": token(client), "role": "support",
                                                        "language": "pt-BR", "password": "x" * 12, **form})
        assert answer.status_code == 400
        return re.search(r'<p class="alert" role="alert">(.*?)</p>', answer.get_data(as_text=True), re.S)[1]

    assert add(pt, name="ana", password="curta") == "A senha precisa de pelo menos 10 caracteres."
    assert add(en, name="ana", password="curta") == "the password must have at least 10 characters"
    assert add(pt, name="Ana Maria").startswith("Nome de operador inválido: &#34;Ana Maria&#34;.")
    assert add(pt, name="ana", role="admin") == "Papel inválido: &#34;admin&#34; (dono ou suporte)."
    assert add(pt, name="john") == ("O operador &#34;john&#34; já existe (troque a senha com"
                                    " `iptvsync admin user passwd`).")
    ledger = Ledger(cfg.ledger_path)
    ledger.conn.execute("UPDATE operators SET role = 'support' WHERE name = 'john'")
    ledger.conn.commit()
    ledger.close()
    refused = pt.post("/operadores/maria/remover", data={"csrf": token(pt)})
    assert refused.status_code == 400
    assert "&#34;maria&#34; é o último dono: adicione outro dono antes." in refused.get_data(as_text=True)
