"""What a newcomer's first hour found: commands that said "done" when nothing was done, or
accepted what no seller means (an empty --key, 100000 days, an email that is not one)."""

from __future__ import annotations

import json
import logging

import pytest
from support.install import BASE_TOML, write_install
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.config import load_config
from iptvsync.engine.runner import _run_logged
from iptvsync.ledger.db import Ledger

_register()


def invoke(install, *args):
    return CliRunner().invoke(app, ["--config", str(install), *map(str, args)], catch_exceptions=False)


def grant(install, email, key, days=30, *extra):
    return invoke(install, "subs", "grant", "--email", email, "--product", "145388", "--days", days, "--key", key,
                  *extra)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


# --- 1. a --key says once what it served ---------------------------------------------------------------

def test_extend_with_a_key_that_served_another_subscription_is_an_error(install, ledger):
    assert grant(install, "a@example.com", "g1").exit_code == 0
    assert grant(install, "b@example.com", "g2").exit_code == 0
    assert invoke(install, "subs", "extend", "1", "--days", "5", "--key", "e1").exit_code == 0
    before = ledger.one("SELECT paid_until FROM subscriptions WHERE id = 2")
    result = invoke(install, "subs", "extend", "2", "--days", "5", "--key", "e1")
    assert result.exit_code == 1
    assert "--key e1 already served subscription 1 (a@example.com" in one_error_line(result)
    assert ledger.one("SELECT paid_until FROM subscriptions WHERE id = 2") == before
    other_days = invoke(install, "subs", "extend", "1", "--days", "7", "--key", "e1")
    assert other_days.exit_code == 1 and "already served subscription 1" in one_error_line(other_days)


def test_the_same_extend_again_is_already_done(install, ledger):
    assert grant(install, "a@example.com", "g1").exit_code == 0
    first = json.loads(invoke(install, "subs", "extend", "1", "--days", "5", "--key", "e1", "--json").stdout)
    again = invoke(install, "subs", "extend", "1", "--days", "5", "--key", "e1")
    assert again.exit_code == 0 and "already done" in again.stdout
    assert ledger.one("SELECT paid_until FROM subscriptions WHERE id = 1")["paid_until"] == first["paid_until"]


def test_grant_with_a_key_used_for_another_email_product_or_days_is_an_error(install, ledger):
    assert grant(install, "a@example.com", "g1").exit_code == 0
    for result in (grant(install, "z@example.com", "g1"), grant(install, "a@example.com", "g1", 60)):
        assert result.exit_code == 1, result.output
        assert "--key g1 already served subscription 1 (a@example.com, product 145388, 30 days)" in \
            one_error_line(result)
    assert ledger.one("SELECT COUNT(*) AS n FROM subscriptions")["n"] == 1
    again = grant(install, "A@example.com ", "g1")
    assert again.exit_code == 0 and "already done" in again.stdout


def test_grant_with_a_key_an_extend_used_is_an_error(install, ledger):
    assert grant(install, "a@example.com", "g1").exit_code == 0
    assert invoke(install, "subs", "extend", "1", "--days", "5", "--key", "e1").exit_code == 0
    result = grant(install, "z@example.com", "e1", 5)
    assert result.exit_code == 1 and "--key e1 already served subscription 1" in one_error_line(result)
    assert ledger.one("SELECT COUNT(*) AS n FROM subscriptions")["n"] == 1


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_key_is_a_usage_error(install, ledger, key):
    result = grant(install, "a@example.com", key)
    assert result.exit_code == 2 and "--key must not be empty" in one_error_line(result)
    assert grant(install, "a@example.com", "g1").exit_code == 0
    ext = invoke(install, "subs", "extend", "1", "--days", "5", "--key", key)
    assert ext.exit_code == 2 and "--key must not be empty" in one_error_line(ext)
    assert ledger.one("SELECT COUNT(*) AS n FROM grants")["n"] == 1


# --- 6. days a seller means ------------------------------------------------------------------------------

def test_more_than_ten_years_is_a_usage_error(install, ledger):
    result = grant(install, "a@example.com", "g1", 100000)
    assert result.exit_code == 2 and "--days must be at most 3660" in one_error_line(result)
    assert grant(install, "a@example.com", "g1", 3660).exit_code == 0
    ext = invoke(install, "subs", "extend", "1", "--days", "100000", "--key", "e1")
    assert ext.exit_code == 2 and "--days must be at most 3660" in one_error_line(ext)


# --- 3. a broken [email] is found by the first run, not by the first buyer ---------------------------

@pytest.fixture
def no_smtp_host(tmp_path):
    return write_install(tmp_path / "install", BASE_TOML.replace('backend = "maildir"', 'backend = "smtp"'))


def test_process_with_nothing_queued_fails_on_a_broken_email_config(no_smtp_host):
    result = invoke(no_smtp_host, "process")
    assert result.exit_code == 2 and "smtp_host" in one_error_line(result)
    ledger = Ledger(load_config(no_smtp_host).ledger_path)
    [run] = ledger.query("SELECT error FROM runs")
    assert "smtp_host" in run["error"]
    status = json.loads(invoke(no_smtp_host, "status", "--json").stdout)
    assert any("last `process` run" in p and "smtp_host" in p for p in status["problems"]), status["problems"]


def test_serve_logs_one_line_per_run_failed_on_its_config(no_smtp_host, caplog):
    cfg = load_config(no_smtp_host)
    with caplog.at_level(logging.INFO, logger="iptvsync"):
        assert _run_logged(cfg, 5) is None
        assert _run_logged(cfg, 5) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and not any(r.exc_info for r in caplog.records)
    assert "process run failed: " in errors[0].getMessage() and "smtp_host" in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage()


# --- 8. words that read right --------------------------------------------------------------------------

def test_status_does_not_lead_with_a_zero_count(install, ledger):
    from support.postbacks import deliver, payload

    deliver(ledger, payload(2, product="999"))
    invoke(install, "process")
    problems = json.loads(invoke(install, "status", "--json").stdout)["problems"]
    [problem] = [p for p in problems if "unmapped" in p]
    assert problem.startswith("1 unmapped postback(s): ") and "0 failed" not in problem


def test_restore_answered_no_says_nothing_restored(install, ledger, tmp_path):
    from support.postbacks import deliver, payload

    deliver(ledger, payload(2))
    copy = tmp_path / "copy.db"
    assert invoke(install, "backup", copy).exit_code == 0
    result = CliRunner().invoke(app, ["--config", str(install), "restore", str(copy)], input="n\n")
    assert result.exit_code == 1
    assert "(1 postback)?" in result.output and "nothing restored" in result.output
    assert not list(install.parent.glob("*.before-restore-*"))
