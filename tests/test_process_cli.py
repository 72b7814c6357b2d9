"""``iptvsync process`` as an operator runs it: summary, --json, --dry-run, --limit, the lock."""

from __future__ import annotations

import json

import pytest
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.engine.runner import AlreadyRunning, process_lock, run_process

_register()


def invoke(install, *args):
    return CliRunner().invoke(app, ["--config", str(install), *args], catch_exceptions=False)


def test_process_json_summary(install, cfg, ledger):
    deliver(ledger, payload(2))
    result = invoke(install, "process", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["apply"]["applied"] == 1 and summary["sync"]["synced"] == 1 and summary["mail"]["sent"] == 1
    assert summary["started_at"].endswith("Z")


def test_dry_run_prints_calls_and_changes_nothing(install, cfg, ledger):
    deliver(ledger, payload(2))
    before = cfg.ledger_path.read_bytes()
    result = invoke(install, "process", "--dry-run", "--json")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)
    assert plan["apply"] == 1 and plan["emails"] == 1
    assert [c["call"] for c in plan["calls"]] == ["create"]
    assert plan["calls"][0]["subscription"] == "sub:1104370"
    assert ledger.one("SELECT status FROM inbox")["status"] == "pending"
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 0
    assert not list(cfg.ledger_path.parent.glob("dry-run-main.*"))
    assert not (cfg.ledger_path.parent / "mail").exists()
    assert cfg.ledger_path.read_bytes() == before
    table = invoke(install, "process", "--dry-run")
    assert "create" in table.stdout and "dry run" in table.stdout


def test_second_concurrent_run_exits_zero_and_says_why(install, cfg, ledger):
    deliver(ledger, payload(2))
    with process_lock(cfg.ledger_path):
        result = invoke(install, "process")
        assert result.exit_code == 0
        assert "another `iptvsync process` is running" in result.stderr
        with pytest.raises(AlreadyRunning):
            run_process(cfg)
    assert ledger.one("SELECT status FROM inbox")["status"] == "pending"  # it did nothing
    assert invoke(install, "process").exit_code == 0
    assert ledger.one("SELECT status FROM inbox")["status"] == "applied"


def test_limit_bounds_each_stage(install, cfg, ledger):
    for i in range(5):
        deliver(ledger, payload(2, sale=f"6100000{i}", subscription=f"77{i}"))
    summary = json.loads(invoke(install, "process", "--limit", "2", "--json").stdout)
    assert summary["apply"]["applied"] == 2 and summary["sync"]["synced"] == 2
    summary = json.loads(invoke(install, "process", "--json").stdout)
    assert summary["apply"]["applied"] == 3 and summary["sync"]["synced"] == 3


def test_status_exits_nonzero_when_unhealthy(install, cfg, ledger, receiver, monkeypatch):
    monkeypatch.setenv("IPTVSYNC_STATUS_RECEIVER_URL", receiver.url)  # serve --port 0: where it listens
    assert invoke(install, "status").exit_code == 0
    deliver(ledger, payload(2, product="999"))
    invoke(install, "process")
    result = invoke(install, "status", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["facts"]["inbox_unmapped"] == 1 and report["problems"]


def test_logs_by_email_tells_support_what_happened(install, cfg, ledger):
    deliver(ledger, payload(2))
    invoke(install, "process")
    rows = json.loads(invoke(install, "logs", "--email", "MARIA@example.com", "--json").stdout)
    assert [r["action"] for r in rows] == ["charge.paid", "panel.created", "email.sent"]
    assert all(r["actor"] == "process" for r in rows)
    text = json.dumps(rows)
    secret_pw = ledger.one("SELECT password_enc FROM subscriptions")["password_enc"]
    assert secret_pw not in text
    assert json.loads(invoke(install, "logs", "--email", "nobody@example.com", "--json").stdout) == []
    assert [r["action"] for r in json.loads(invoke(install, "logs", "--action", "panel", "--json").stdout)] == [
        "panel.created"]


def test_subs_grant_extend_suspend_resume_cancel(install, cfg, ledger):
    out = json.loads(invoke(install, "subs", "grant", "--email", "joao@example.com", "--product", "145388",
                            "--days", "10", "--key", "gift-1", "--json").stdout)
    assert out["added"] is True and out["desired_enabled"] == 1
    again = json.loads(invoke(install, "subs", "grant", "--email", "joao@example.com", "--product", "145388",
                              "--days", "10", "--key", "gift-1", "--json").stdout)
    assert again["added"] is False and again["paid_until"] == out["paid_until"]  # the key makes it once
    ext = json.loads(invoke(install, "subs", "extend", str(out["id"]), "--days", "5", "--key", "ext-1",
                            "--json").stdout)
    assert ext["added"] is True and ext["paid_until"] > out["paid_until"]
    invoke(install, "process")
    assert invoke(install, "subs", "suspend", "joao@example.com").exit_code == 0
    invoke(install, "process")
    shown = json.loads(invoke(install, "subs", "show", str(out["id"]), "--json").stdout)
    assert shown["desired_enabled"] == 0 and shown["applied_enabled"] == 0
    assert "password_enc" not in shown
    invoke(install, "subs", "resume", str(out["id"]))
    invoke(install, "process")
    shown = json.loads(invoke(install, "subs", "show", str(out["id"]), "--json").stdout)
    assert shown["applied_enabled"] == 1
    assert [e["kind"] for e in shown["emails"]] == ["activation"]
    invoke(install, "subs", "cancel", str(out["id"]), "--immediately")
    invoke(install, "process")
    shown = json.loads(invoke(install, "subs", "show", str(out["id"]), "--json").stdout)
    assert shown["applied_enabled"] == 0 and [e["kind"] for e in shown["emails"]] == ["activation", "access_ended"]
    actions = [r["action"] for r in json.loads(invoke(install, "logs", "--subscription", str(out["id"]),
                                                       "--json").stdout)]
    assert "grant.added" in actions and "subscription.suspended" in actions
    assert invoke(install, "subs", "show", "nobody").exit_code == 2  # a usage error


def test_logs_by_subscription_takes_what_subs_show_takes(install, cfg, ledger):
    deliver(ledger, payload(2, subscription="1104370"))
    invoke(install, "process")
    sub_id = json.loads(invoke(install, "subs", "show", "1104370", "--json").stdout)["id"]
    for ref in (str(sub_id), "1104370", "sub:1104370"):  # the id, Monetizze's subscription code, the key
        rows = json.loads(invoke(install, "logs", "--subscription", ref, "--json").stdout)
        assert rows and {r["subscription_id"] for r in rows} == {sub_id}, ref
        assert "panel.created" in [r["action"] for r in rows]
    unknown = invoke(install, "logs", "--subscription", "abc")
    assert unknown.exit_code == 2
    assert unknown.output == "error: no subscription 'abc'\n"


def test_logs_by_email_shows_an_unmapped_product(install, cfg, ledger):
    deliver(ledger, payload(2, product="999"))
    invoke(install, "process")
    [row] = json.loads(invoke(install, "logs", "--email", "maria@example.com", "--json").stdout)
    assert row["action"] == "inbox.unmapped" and row["sale_code"] == "51000001"
    assert "unmapped product 999" in row["detail"]
