"""Emails through ``process`` into a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from support.install import BASE_TOML, SECRET_KEY, write_install
from support.postbacks import deliver, payload
from support.smtp import RecordingHandler, _self_signed, free_port, smtp_server

from iptvsync.clock import SAO_PAULO, now
from iptvsync.config import load_config
from iptvsync.credentials import decrypt
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ops import subs

SMTP_USER, SMTP_PASS = "loja", "smtp-pa55word"


def smtp_install(tmp_path, port: int, security: str = "starttls", language: str = "pt-BR"):
    """An install that mails through 127.0.0.1:port; AUTH only where the channel is encrypted."""
    toml = BASE_TOML.replace('backend = "maildir"', 'backend = "smtp"') + (
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "{security}"\n'
        f'smtp_cafile = "{_self_signed()[0]}"\nlanguage = "{language}"\ntimeout_s = 5\n')
    creds = {"SMTP_USERNAME": SMTP_USER, "SMTP_PASSWORD": SMTP_PASS} if security != "none" else {}
    path = write_install(tmp_path / "i", toml, env=creds)
    return load_config(path)


def paid_now() -> str:
    return now().astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")


def outbox(ledger):
    return ledger.query("SELECT id, kind, status, attempts, last_error, message_id FROM outbox ORDER BY id")


def test_activation_over_starttls_with_auth(tmp_path):
    with smtp_server(tls="starttls", auth=(SMTP_USER, SMTP_PASS)) as server:
        cfg = smtp_install(tmp_path, server.port)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        summary = run_process(cfg)
        assert summary["mail"]["sent"] == 1
        assert server.logins == [SMTP_USER]
        [received] = server.received
    msg = received.message()
    sub = ledger.one("SELECT * FROM subscriptions")
    password = decrypt(sub["password_enc"], SECRET_KEY)
    row = outbox(ledger)[0]
    assert received.rcpt_tos == ["maria@example.com"]
    assert msg["Message-ID"] == row["message_id"] and row["status"] == "sent"
    assert "maria@example.com" in msg["To"] and "no-reply@loja.example" in msg["From"]
    assert "IPTV Mensal" in msg["Subject"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert sub["username"] in part and password in part
        assert "http://tv.example.com:8080" in part
        assert f"get.php?username={sub['username']}&amp;password={password}" in part or \
            f"get.php?username={sub['username']}&password={password}" in part
        assert "xmltv.php" in part
    expiry_local = datetime.fromisoformat(sub["paid_until"].replace("Z", "+00:00")).astimezone(SAO_PAULO)
    assert expiry_local.strftime("%d/%m/%Y %H:%M") in text
    assert "Usuário" in text  # Portuguese by default


def test_english_when_configured(tmp_path):
    with smtp_server(tls="starttls", auth=(SMTP_USER, SMTP_PASS)) as server:
        cfg = smtp_install(tmp_path, server.port, language="en")
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        [received] = server.received
    text = received.message().get_body(("plain",)).get_content()
    assert "Username" in text and "Usuário" not in text


def test_smtp_down_delays_then_sends_exactly_once(tmp_path):
    port = free_port()
    cfg = smtp_install(tmp_path, port, security="none")
    ledger = Ledger(cfg.ledger_path)
    start = datetime.now(UTC)
    with freeze_time(start, real_asyncio=True) as clock:
        deliver(ledger, payload(2, paid=paid_now()))
        first = run_process(cfg)
        assert first["mail"]["failed"] == 1 and first["sync"]["synced"] == 1
        [row] = outbox(ledger)
        assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"]
        # still down on the next runs: nothing lost, nothing sent, backing off
        clock.tick(timedelta(minutes=5))
        run_process(cfg)
        assert outbox(ledger)[0]["status"] == "pending"
        handler = RecordingHandler()
        from aiosmtpd.controller import Controller

        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            clock.tick(timedelta(hours=2))
            assert run_process(cfg)["mail"]["sent"] == 1
            clock.tick(timedelta(hours=2))
            assert run_process(cfg)["mail"]["sent"] == 0
        finally:
            controller.stop()
    assert len(handler.received) == 1
    assert outbox(ledger)[0]["status"] == "sent"


def test_permanent_rejection_ends_failed_with_reason(tmp_path):
    with smtp_server(rcpt_replies={"maria@example.com": "550 5.1.1 No such user"}) as server:
        cfg = smtp_install(tmp_path, server.port, security="none")
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        run_process(cfg)
    [row] = outbox(ledger)
    assert row["status"] == "failed" and "550" in row["last_error"] and row["attempts"] == 1
    from iptvsync.ops.health import health

    assert any("email" in p for p in health(cfg)["problems"])


def test_resend_is_a_new_audited_row(tmp_path):
    with smtp_server() as server:
        cfg = smtp_install(tmp_path, server.port, security="none")
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        subs.resend(ledger, "maria@example.com", "activation")
        run_process(cfg)
        assert len(server.received) == 2
    ids = {r.message()["Message-ID"] for r in server.received}
    assert len(ids) == 2
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE action = 'email.resend'")["n"] == 1


def test_kill_between_smtp_accept_and_mark_sent_resends_same_message_id(tmp_path):
    """Documented at-least-once: the server accepted, the process died before recording it;
    the next run sends the same message again, with the same Message-ID."""
    victim = {}

    class KillOnAccept(RecordingHandler):
        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            reply = await super().handle_DATA(server, session, envelope)
            if "pid" in victim:  # accepted and recorded: the client dies before it can mark it
                os.kill(victim.pop("pid"), signal.SIGKILL)
            return reply

    from aiosmtpd.controller import Controller

    handler = KillOnAccept()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = smtp_install(tmp_path, port, security="none")
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        env = {**os.environ, "IPTVSYNC_CONFIG": str(cfg.path)}
        proc = subprocess.Popen([sys.executable, "-m", "iptvsync", "process"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        victim["pid"] = proc.pid
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert len(handler.received) == 1
        assert outbox(ledger)[0]["status"] == "pending"  # not marked: the kill came first
        again = subprocess.run([sys.executable, "-m", "iptvsync", "process"], env=env, capture_output=True,
                               timeout=60)
        assert again.returncode == 0, again.stderr
    finally:
        controller.stop()
    assert len(handler.received) == 2
    first, second = (r.message() for r in handler.received)
    assert first["Message-ID"] == second["Message-ID"] == outbox(ledger)[0]["message_id"]
    assert outbox(ledger)[0]["status"] == "sent"
    # and the line was created once
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE action = 'panel.created'")["n"] == 1


@pytest.mark.parametrize("security", ["tls"])
def test_implicit_tls(tmp_path, security):
    with smtp_server(tls="implicit", auth=(SMTP_USER, SMTP_PASS)) as server:
        cfg = smtp_install(tmp_path, server.port, security=security)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        assert run_process(cfg)["mail"]["sent"] == 1
        assert len(server.received) == 1


def test_every_kind_through_a_lifecycle_as_the_buyer_reads_it(tmp_path):
    """Each kind's message as received: headers, both parts, the dates in São Paulo time."""
    with smtp_server() as server:
        cfg = smtp_install(tmp_path, server.port, security="none")
        ledger = Ledger(cfg.ledger_path)
        with freeze_time("2026-11-20T18:00:00Z", real_asyncio=True) as clock:
            deliver(ledger, payload(2))  # recurring: paid 20/11 14:37 → paid_until 20/12 14:37
            deliver(ledger, payload(2, sale="51000900", subscription=None, email="joao@example.com"))
            deliver(ledger, payload(2, sale="51000901", subscription=None, email="ana@example.com"))
            run_process(cfg)
            deliver(ledger, payload(4, sale="51000901", subscription=None, email="ana@example.com"))
            run_process(cfg)
            clock.move_to("2026-12-18T12:00:00Z")  # renewal; one-off reminder (2 days left)
            deliver(ledger, payload(2, sale="51000777", parcela=2, paid="2026-12-18 09:00:00"))
            run_process(cfg)
            clock.move_to("2027-01-21T12:00:00Z")  # next charge failed
            deliver(ledger, payload(102, sale="51000778", parcela=3))
            run_process(cfg)
            clock.move_to("2027-01-22T12:00:00Z")
            deliver(ledger, payload(103))
            run_process(cfg)
            clock.move_to("2027-01-25T12:00:00Z")  # past paid_until (19/01 + nothing: cancelled)
            run_process(cfg)
    by_kind: dict[str, list] = {}
    kinds = {r["message_id"]: r["kind"] for r in ledger.query("SELECT kind, message_id FROM outbox")}
    for received in server.received:
        msg = received.message()
        by_kind.setdefault(kinds[msg["Message-ID"]], []).append((received.rcpt_tos, msg))
    assert sorted(by_kind) == ["access_ended", "activation", "expired", "payment_failed", "refund", "reminder",
                               "renewal"]
    for kind, messages in by_kind.items():
        for _rcpt, msg in messages:
            assert msg["Subject"].strip() and msg["From"] and msg["Date"]
            assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None, kind

    def text(kind, rcpt="maria@example.com"):
        [msg] = [m for r, m in by_kind[kind] if r == [rcpt]]
        return msg.get_body(("plain",)).get_content() + msg.get_body(("html",)).get_content()

    assert "19/01/2027 14:37" in text("renewal")  # 20/12 + 30 days, São Paulo time
    assert "get.php?username=" in text("renewal")
    assert "19/01/2027" in text("payment_failed") or "22/01/2027" in text("payment_failed")  # + grace
    # cancelled after paid_until, during the overdue grace: access ends at once, and it says so
    assert "22/01/2027 09:00" in text("access_ended") and "continua" not in text("access_ended")
    assert "20/12/2026 14:37" in text("reminder", "joao@example.com")
    assert "Senha" not in text("refund", "ana@example.com")
    assert "20/12/2026" in text("expired", "joao@example.com")  # the one-off ran out


def test_message_ids_differ_between_installs(tmp_path):
    """Row 1 of two ledgers must not share a Message-ID: a mail client would hide the second."""
    from cryptography.fernet import Fernet
    from support.install import write_install as make

    ids = []
    for name, secret in (("a", Fernet.generate_key().decode()), ("b", Fernet.generate_key().decode())):
        cfg = load_config(make(tmp_path / name, BASE_TOML, env={"IPTVSYNC_SECRET_KEY": secret}))
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, paid=paid_now()))
        run_process(cfg)
        ids.append(outbox(ledger)[0]["message_id"])
    assert ids[0] != ids[1] and all(i.startswith("<") and i.endswith("@loja.example>") for i in ids)
