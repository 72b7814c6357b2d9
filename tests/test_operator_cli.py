"""Issue 11: commands that do what they say (hints, --json, exit codes, idempotent holds)."""

from __future__ import annotations

import json

import pytest
from freezegun import freeze_time
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.engine.runner import process_lock
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.queue import MailStatus

_register()
T0 = "2026-11-20T18:00:00Z"


def invoke(install, *args):
    return CliRunner().invoke(app, ["--config", str(install), *map(str, args)], catch_exceptions=False)


def audit_actions(ledger) -> list[str]:
    return [r["action"] for r in ledger.query("SELECT action FROM audit ORDER BY id")]


def test_status_names_the_unmapped_filter_for_unmapped_postbacks(install, ledger):
    deliver(ledger, payload(2, product="999"))
    invoke(install, "process")
    report = json.loads(invoke(install, "status", "--json").stdout)
    [problem] = [p for p in report["problems"] if "unmapped" in p]
    assert "`iptvsync inbox list --status unmapped`" in problem
    assert "--status failed" not in problem


def test_process_json_when_another_run_holds_the_lock(install, cfg):
    with process_lock(cfg.ledger_path):
        result = invoke(install, "process", "--json")
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    assert out["skipped"] == "locked" and "lock" in out["reason"]


@pytest.mark.parametrize("args", [
    ("inbox", "list", "--status", "bogus"),
    ("inbox", "replay", "999"),
    ("inbox", "retry", "999"),
    ("inbox", "show", "999"),
    ("subs", "grant", "--email", "a@example.com", "--product", "999", "--days", "3", "--key", "k"),
    ("subs", "grant", "--email", "a@example.com", "--product", "145388", "--days", "0", "--key", "k"),
    ("subs", "show", "nobody@example.com"),
    ("subs", "resend", "1", "--kind", "bogus"),
])
def test_usage_errors_exit_2_with_one_line(install, args):
    result = invoke(install, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


@freeze_time(T0)
def test_suspend_twice_and_resume_unsuspended_write_one_audit_row_each(install, ledger):
    deliver(ledger, payload(2))
    invoke(install, "process")
    first = invoke(install, "subs", "resume", "maria@example.com")
    assert first.exit_code == 0 and "not suspended" in first.stdout
    assert invoke(install, "subs", "suspend", "maria@example.com").exit_code == 0
    again = invoke(install, "subs", "suspend", "maria@example.com")
    assert again.exit_code == 0 and "already suspended" in again.stdout
    assert "resumed" in invoke(install, "subs", "resume", "maria@example.com").stdout
    assert "not suspended" in invoke(install, "subs", "resume", "maria@example.com").stdout
    actions = audit_actions(ledger)
    assert actions.count("subscription.suspended") == 1 and actions.count("subscription.resumed") == 1


@freeze_time(T0)
def test_resume_lifts_a_dispute(install, ledger):
    deliver(ledger, payload(2))
    deliver(ledger, payload(5))
    invoke(install, "process")
    result = invoke(install, "subs", "resume", "maria@example.com")
    assert "resumed (enabled: True)" in result.stdout
    assert audit_actions(ledger).count("subscription.resumed") == 1


def test_inbox_replay_is_audited_as_replay(install, ledger):
    deliver(ledger, payload(2))
    invoke(install, "process")
    assert "1 postback(s) queued for replay" in invoke(install, "inbox", "replay", "1").stdout
    assert audit_actions(ledger)[-1] == "inbox.replay"
    assert "inbox.retry" not in audit_actions(ledger)


def test_subs_retry_counts_an_email_not_a_subscription(tmp_path):
    from support.install import BASE_TOML, write_install

    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "activation.txt").write_text("{{ no_such_value }}\n", "utf-8")
    install = write_install(tmp_path / "i", BASE_TOML.replace(
        'maildir = "mail/"', f'maildir = "mail/"\ntemplates_dir = "{templates}"'))
    ledger = Ledger(install.parent / "iptvsync.db")
    deliver(ledger, payload(2))
    invoke(install, "process")
    result = invoke(install, "subs", "retry")
    assert result.stdout.strip() == "0 subscription(s) and 1 email(s) queued again"


# --- serve: one line naming the setting, never a traceback -----------------------------------------------

def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_serve_on_a_busy_port_exits_1(install):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = invoke(install, "serve", "--port", busy.getsockname()[1])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "port" in line and "already in use" in line


@pytest.mark.parametrize(("args", "fragments"), [
    (("serve", "--port", "99999"), ("[receiver] port", "99999")),
    (("serve", "--certfile", "/nowhere/cert.pem"), ("--certfile", "/nowhere/cert.pem", "does not exist")),
])
def test_serve_bad_settings_exit_2(install, args, fragments):
    result = invoke(install, *args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert all(f in line for f in fragments), line


def test_missing_certfile_is_flagged_by_serve_status_and_doctor(tmp_path):
    from support.install import BASE_TOML, write_install

    install = write_install(tmp_path / "i", BASE_TOML.replace(
        'path = "/monetizze/postback/s3cr3tpath"', 'path = "/monetizze/postback/s3cr3tpath"\ncertfile = "tls/cert.pem"'
        '\nkeyfile = "tls/key.pem"'))
    invoke(install, "init")
    result = invoke(install, "serve")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "[receiver] certfile" in line and str(install) in line and "cert.pem does not exist" in line
    status = invoke(install, "status", "--json")
    assert status.exit_code == 1
    assert any("[receiver] certfile" in p for p in json.loads(status.stdout)["problems"])
    rows = json.loads(invoke(install, "doctor", "--json").stdout)
    [tls] = [r for r in rows if r["check"] == "receiver TLS"]
    assert tls["status"] == "fail" and "[receiver] certfile" in tls["detail"]


def test_serve_with_bad_allowed_ips_exits_2(tmp_path):
    from support.install import BASE_TOML, write_install

    install = write_install(tmp_path / "i", BASE_TOML.replace('port = 0', 'port = 0\nallowed_ips = ["300.1.1.1/24"]'))
    for command in ("serve", "status", "doctor"):
        result = invoke(install, command)
        assert result.exit_code == 2
        assert "[receiver] allowed_ips" in one_error_line(result)


def test_doctor_warns_about_example_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(app, ["init"], catch_exceptions=False)
    rows = json.loads(CliRunner().invoke(app, ["doctor", "--json"]).stdout)
    [row] = [r for r in rows if r["check"] == "example values"]
    assert row["status"] == "warn"
    assert "[panels.main.links] server" in row["detail"] and "[email] from" in row["detail"]
    assert "[email] support" in row["detail"]


def test_subs_show_takes_the_monetizze_subscription_code_that_inbox_show_prints(cfg, ledger):
    from iptvsync.engine.runner import run_process
    from iptvsync.ops import subs

    deliver(ledger, payload(2, subscription="SIM6342998"))
    run_process(cfg)
    assert subs.find(ledger, "SIM6342998")["key"] == "sub:SIM6342998"


def test_status_names_the_subscription_of_a_failed_email_and_the_commands(cfg, ledger):
    from iptvsync.engine.runner import run_process
    from iptvsync.ops.health import health

    deliver(ledger, payload(2))
    run_process(cfg)
    with ledger.tx() as conn:
        conn.execute("UPDATE outbox SET status = ?, last_error = '550 mailbox unavailable'", (MailStatus.FAILED,))
    sub_id = ledger.one("SELECT subscription_id FROM outbox")["subscription_id"]
    problem = next(p for p in health(cfg)["problems"] if "email(s)" in p)
    assert f"iptvsync subs show {sub_id}" in problem and f"iptvsync subs retry {sub_id}" in problem
