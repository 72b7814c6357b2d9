"""Issue 20, steps 1-2: every operator action names its actor (``cli:<unix user>`` from the CLI,
``web:<login>`` with the client and the reason from the console), the inbox commands go through
``ops/``, and the console's operators (``admin user …``): Argon2id, TOTP, sessions, throttle."""

from __future__ import annotations

import json
from datetime import timedelta

import pyotp
import pytest
from freezegun import freeze_time
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import now, parse_iso
from iptvsync.ledger.db import Ledger, os_user
from iptvsync.ops import inbox as ops_inbox
from iptvsync.ops import operators, sessions
from iptvsync.ops import subs as ops_subs
from iptvsync.ops.actor import Actor

_register()
CLI = f"cli:{os_user()}"
WEB = Actor("web:maria", client="203.0.113.7", reason="buyer paid by pix")


def invoke(install, *args, input=None):
    return CliRunner().invoke(app, ["--config", str(install), *map(str, args)], input=input,
                              catch_exceptions=False)


def audit(ledger, action=None):
    rows = ledger.query("SELECT * FROM audit ORDER BY id")
    rows = [{**r, "detail": json.loads(r["detail"])} for r in rows]
    return [r for r in rows if action is None or r["action"] == action]


# --- step 1: actor= ------------------------------------------------------------------------------------------

def test_cli_actions_are_audited_as_cli_and_the_unix_user(install, ledger):
    assert invoke(install, "subs", "grant", "--email", "ana@example.com", "--product", "145388", "--days", "5",
                  "--key", "g1").exit_code == 0
    assert invoke(install, "subs", "extend", "1", "--days", "2", "--key", "e1").exit_code == 0
    assert invoke(install, "subs", "suspend", "1").exit_code == 0
    assert invoke(install, "subs", "resume", "1").exit_code == 0
    assert invoke(install, "subs", "resend", "1").exit_code == 0
    assert invoke(install, "subs", "cancel", "1").exit_code == 0
    deliver(ledger, payload(2, product="999"))
    invoke(install, "process")
    assert invoke(install, "inbox", "retry").exit_code == 0
    mine = [r for r in audit(ledger) if r["actor"] != "process"]
    assert [r["action"] for r in mine] == ["grant.added", "grant.added", "subscription.suspended",
                                           "subscription.resumed", "email.resend", "subscription.cancelled",
                                           "inbox.retry"]
    assert {r["actor"] for r in mine} == {CLI}
    assert ledger.query("SELECT DISTINCT actor FROM grants") == [{"actor": CLI}]


def test_web_actor_puts_client_and_reason_in_the_audit_row(cfg, ledger):
    sub, _ = ops_subs.grant(ledger, cfg, email="ana@example.com", product="145388", days=5, key="g1", actor=WEB)
    ops_subs.extend(ledger, cfg, str(sub["id"]), 3, "web-1", actor=WEB)
    ops_subs.set_hold(ledger, cfg, str(sub["id"]), "suspended", actor=WEB)
    ops_subs.retry(ledger, str(sub["id"]), actor=WEB)
    rows = [r for r in audit(ledger) if r["action"] != "email.queued"]
    assert {r["actor"] for r in rows} == {"web:maria"}
    assert all(r["detail"]["client"] == "203.0.113.7" and r["detail"]["reason"] == "buyer paid by pix"
               for r in rows)
    # the grant keeps the reason as its note when none is given
    assert {r["note"] for r in ledger.query("SELECT note FROM grants")} == {"buyer paid by pix"}


def test_inbox_actions_through_ops_carry_the_actor(cfg, ledger):
    deliver(ledger, payload(2, product="999"))
    from iptvsync.engine.runner import run_process as run

    run(cfg)
    [row] = ops_inbox.list_rows(ledger, status="unmapped")
    assert ops_inbox.retry(ledger, [row["id"]], actor=WEB) == 1
    assert audit(ledger, "inbox.retry")[-1]["actor"] == "web:maria"
    shown = ops_inbox.show(ledger, cfg, row["id"])
    assert cfg.secrets.chave_unica not in json.dumps(shown, default=str)


def test_reveal_password_is_audited_without_the_password(cfg, ledger):
    from iptvsync.engine.runner import run_process as run

    sub, _ = ops_subs.grant(ledger, cfg, email="ana@example.com", product="145388", days=5, key="g1")
    run(cfg)
    password = ops_subs.reveal_password(ledger, cfg, str(sub["id"]), actor=WEB)
    assert len(password) >= 10
    [row] = audit(ledger, "password.revealed")
    assert row["actor"] == "web:maria" and password not in json.dumps(row)


# --- step 2: operators ---------------------------------------------------------------------------------------

def test_admin_user_add_list_passwd_remove(install, ledger):
    out = invoke(install, "admin", "user", "add", "maria", "--role", "owner", "--password-stdin",
                 input="correct horse battery\n")
    assert out.exit_code == 0, out.output
    stored = ledger.one("SELECT password_hash FROM operators WHERE name = 'maria'")["password_hash"]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert operators.check_password(ledger, "maria", "correct horse battery")["role"] == "owner"
    assert operators.check_password(ledger, "maria", "wrong password!") is None
    assert operators.check_password(ledger, "nobody", "correct horse battery") is None
    invoke(install, "admin", "user", "add", "joao", "--role", "support", "--password-stdin", input="joao-secret-1\n")
    listed = json.loads(invoke(install, "admin", "user", "list", "--json").stdout)
    assert [(r["name"], r["role"], r["totp"]) for r in listed] == [("joao", "support", False),
                                                                 ("maria", "owner", False)]
    sid, _ = sessions.start(ledger, operators.get(ledger, "joao")["id"], "full", "127.0.0.1")
    assert invoke(install, "admin", "user", "passwd", "joao", "--password-stdin",
                  input="joao-secret-2\n").stdout.strip() == "password of joao changed; 1 session(s) ended"
    assert sessions.load(ledger, sid) is None
    assert operators.check_password(ledger, "joao", "joao-secret-2")
    assert invoke(install, "admin", "user", "remove", "joao").exit_code == 0
    bad = invoke(install, "admin", "user", "remove", "maria")  # the last owner stays
    assert bad.exit_code == 2 and "last owner" in bad.stderr
    assert {r["actor"] for r in audit(ledger) if r["action"].startswith("operator.")} == {CLI}


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("add", "Maria!", "--role", "owner"), "long enough pw\n", "operator names are"),
    (("add", "maria", "--role", "admin"), "long enough pw\n", "--role must be one of owner, support"),
    (("add", "maria", "--role", "owner"), "short\n", "at least 10 characters"),
    (("passwd", "ghost"), "long enough pw\n", "no operator 'ghost'"),
])
def test_admin_user_usage_errors(install, args, stdin, message):
    out = invoke(install, "admin", "user", *args[:1], *args[1:], "--password-stdin", input=stdin) \
        if args[0] in ("add", "passwd") else invoke(install, "admin", "user", *args)
    assert out.exit_code == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_totp_codes_are_accepted_once(install, cfg, ledger):
    invoke(install, "admin", "user", "add", "maria", "--role", "owner", "--password-stdin", input="long enough pw\n")
    out = invoke(install, "admin", "user", "totp", "maria")
    secret = out.stdout.splitlines()[1]
    assert "otpauth://totp/" in out.stdout
    op = operators.get(ledger, "maria")
    assert secret not in op["totp_secret_enc"] and operators.needs_totp(cfg, op)
    code = pyotp.TOTP(secret).now()
    assert operators.check_totp(ledger, cfg, op["id"], "000000" if code != "000000" else "111111") is False
    assert operators.check_totp(ledger, cfg, op["id"], code) is True
    assert operators.check_totp(ledger, cfg, op["id"], code) is False  # spent
    invoke(install, "admin", "user", "totp", "maria", "--off")
    assert not operators.needs_totp(cfg, operators.get(ledger, "maria"))


def test_sessions_expire_idle_and_absolute_and_are_stored_hashed(ledger):
    op = operators.add(ledger, "maria", "owner", "long enough pw")
    with freeze_time("2026-12-01T12:00:00Z") as clock:
        sid, csrf = sessions.start(ledger, op["id"], "full", "127.0.0.1")
        assert ledger.one("SELECT COUNT(*) AS n FROM operator_sessions WHERE id_hash = ?", (sid,))["n"] == 0
        assert len(sid) >= 43  # 32 random bytes, url-safe base64
        for _ in range(25):  # active every 29 minutes: alive until the absolute limit
            clock.tick(timedelta(minutes=29))
            if now() - parse_iso("2026-12-01T12:00:00Z") > sessions.ABSOLUTE:
                assert sessions.load(ledger, sid) is None
                break
            assert sessions.load(ledger, sid)["csrf"] == csrf
        else:
            pytest.fail("the session outlived its absolute limit")
        sid2, _ = sessions.start(ledger, op["id"], "full", "127.0.0.1")
        clock.tick(timedelta(minutes=31))
        assert sessions.load(ledger, sid2) is None
        sid3, _ = sessions.start(ledger, op["id"], "password", "127.0.0.1")
        clock.tick(timedelta(seconds=301))
        assert sessions.load(ledger, sid3) is None  # the TOTP step has 300 s


def test_throttle_backs_off_exponentially_per_name_and_address(ledger):
    keys = sessions.throttle_keys("maria", "198.51.100.9")
    actor = Actor("web:?", client="198.51.100.9")
    with freeze_time("2026-12-01T12:00:00Z"):
        for _ in range(sessions.FREE_FAILURES - 1):
            sessions.failed(ledger, keys, actor, None)
        assert sessions.blocked_until(ledger, keys) is None
        blocks = []
        for _ in range(5):
            sessions.failed(ledger, keys, actor, None)
            blocks.append((sessions.blocked_until(ledger, keys) - now()).total_seconds())
        assert blocks == [1, 2, 4, 8, 16]
        # another address trying the same name is held by the name's key, and the reverse
        assert sessions.blocked_until(ledger, sessions.throttle_keys("MARIA", "192.0.2.1"))
        assert sessions.blocked_until(ledger, sessions.throttle_keys("joao", "198.51.100.9"))
        assert sessions.blocked_until(ledger, sessions.throttle_keys("joao", "192.0.2.1")) is None
        rows = audit(ledger, "admin.login_failed")
        assert len(rows) == 7 and rows[-1]["detail"]["operator"] == "(unknown)"
        assert "maria" not in json.dumps(rows)  # an unknown name (or a password typed there) is not kept
        sessions.succeeded(ledger, keys)
        assert sessions.blocked_until(ledger, keys) is None


def test_migration_on_a_blank_ledger_makes_the_operator_tables(tmp_path):
    led = Ledger(tmp_path / "x.db", create=True)
    assert {"operators", "operator_sessions", "login_throttle"} <= set(led.db.table_names())


def test_a_ledger_from_before_the_console_upgrades_with_its_rows(tmp_path, cfg):
    import sqlite_utils

    from iptvsync.ledger.migrations import migrations

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m018_admin_operators")
    old.conn.close()
    before = Ledger(path, migrate=False)
    assert before.pending_migrations()[:2] == ["m018_admin_operators", "m019_admin_indexes"]
    ops_subs.grant(before, cfg, email="ana@example.com", product="145388", days=5, key="g1")
    before.close()
    led = Ledger(path)  # opening it upgrades it
    assert led.pending_migrations() == []
    assert operators.add(led, "maria", "owner", "long enough pw")["role"] == "owner"
    assert led.one("SELECT buyer_email FROM subscriptions")["buyer_email"] == "ana@example.com"
    indexes = {r["name"] for r in led.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"charges_paid_at", "charges_refunded", "subs_cancelled", "inbox_attached"} <= indexes


def test_subs_show_timeline_merges_postbacks_charges_panel_and_emails(install, cfg, ledger):
    from iptvsync.engine.runner import run_process

    deliver(ledger, payload(2))
    run_process(cfg)
    ops_subs.extend(ledger, cfg, "1", 3, "e1", actor=WEB)
    out = json.loads(invoke(install, "subs", "show", "1", "--timeline", "--json").stdout)
    whats = [e["what"] for e in out["timeline"]]
    assert whats[0] == "grant.added" and whats[-1] == "postback.approved", whats
    assert {"charge.paid", "panel.created", "email.sent"} <= set(whats)
    assert [e["at"] for e in out["timeline"]] == sorted((e["at"] for e in out["timeline"]), reverse=True)
    text = invoke(install, "subs", "show", "1", "--timeline").stdout
    assert "grant.added" in text and "web:maria" in text and all(len(line) <= 80 for line in text.splitlines())


def test_rows_without_an_actor_are_the_command_lines(ledger):
    """The audit writer's default: what `reconcile`, `rekey` and `simulate --live` write from the CLI."""
    ledger.audit("secret_key.rotated", reencrypted=0)
    assert audit(ledger)[-1]["actor"] == CLI


def test_admin_serve_on_a_busy_port_is_one_line_and_exit_1(install):
    import subprocess
    import sys

    from support.console import Console

    running = Console(install)
    try:
        port = running.url.rsplit(":", 1)[1]
        out = subprocess.run([sys.executable, "-m", "iptvsync", "--config", str(install), "admin", "serve",
                              "--port", port], capture_output=True, text=True, timeout=60)
    finally:
        running.stop()
    assert "Traceback" not in out.stderr
    assert out.returncode == 1 and out.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port} ([admin] host and port, or --host/--port): the port is"
        " already in use")


def test_admin_user_add_asks_the_password_twice(install, ledger):
    out = invoke(install, "admin", "user", "add", "bia", "--role", "support", input="long enough pw\nlong enough pw\n")
    assert out.exit_code == 0, out.output
    assert "long enough pw" not in out.output  # not echoed
    assert operators.check_password(ledger, "bia", "long enough pw")["role"] == "support"
