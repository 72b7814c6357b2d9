"""``process`` end to end on a real ledger with the dry-run panel: what each event does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.postbacks import deliver, payload

from iptvsync.clock import parse_iso
from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger

PAID = datetime(2026, 11, 20, 17, 37, 57, tzinfo=UTC)  # 14:37:57 in São Paulo
T0 = "2026-11-20T18:00:00Z"


@pytest.fixture
def ledger(cfg):
    led = Ledger(cfg.ledger_path)
    yield led
    led.close()


def sub_row(ledger, key="sub:1104370"):
    return ledger.one("SELECT * FROM subscriptions WHERE key = ?", (key,))


def dry_lines(cfg) -> dict:
    path = cfg.ledger_path.parent / "dry-run-main.json"
    return json.loads(path.read_text())["lines"] if path.exists() else {}


def emails(ledger, status=None):
    sql = "SELECT kind, cycle, status FROM outbox" + (" WHERE status = ?" if status else "") + " ORDER BY id"
    return [(r["kind"], r["cycle"], r["status"]) for r in ledger.query(sql, (status,) if status else ())]


def eml_files(cfg):
    return sorted((cfg.ledger_path.parent / "mail").glob("*.eml"))


@freeze_time(T0)
def test_purchase_creates_line_and_sends_activation(cfg, ledger):
    deliver(ledger, payload(2))
    summary = run_process(cfg)
    assert summary["apply"]["applied"] == 1 and summary["sync"]["synced"] == 1 and summary["mail"]["sent"] == 1
    sub = sub_row(ledger)
    assert parse_iso(sub["paid_until"]) == PAID + timedelta(days=30)
    assert sub["desired_enabled"] == 1 and sub["sync_status"] == "synced"
    assert sub["desired_expires_at"] == int((PAID + timedelta(days=33)).timestamp())  # + grace_days
    lines = dry_lines(cfg)
    assert list(lines) == [sub["username"]]
    assert lines[sub["username"]]["enabled"] is True or lines[sub["username"]]["enabled"] == 1
    assert len(sub["username"]) >= 10 and sub["username"].isalnum() and sub["username"].islower()
    assert emails(ledger) == [("activation", "1", "sent")]
    assert len(eml_files(cfg)) == 1
    # a second run does nothing more
    again = run_process(cfg)
    assert again["apply"]["applied"] == 0 and again["sync"]["synced"] == 0 and again["mail"]["sent"] == 0
    assert len(eml_files(cfg)) == 1


@freeze_time(T0)
def test_same_postback_twice_is_one_effect(cfg, ledger):
    deliver(ledger, payload(2))
    deliver(ledger, payload(2))
    assert ledger.one("SELECT COUNT(*) n, MAX(times_seen) t FROM inbox") == {"n": 1, "t": 2}
    run_process(cfg)
    assert ledger.one("SELECT COUNT(*) n FROM charges")["n"] == 1
    assert len(dry_lines(cfg)) == 1 and len(eml_files(cfg)) == 1


def test_renewal_of_active_line_extends_from_paid_until(cfg, ledger):
    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
    with freeze_time("2026-12-18T12:00:00Z"):  # renewal paid 2 days before the period ends
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid="2026-12-18 09:00:00"))
        summary = run_process(cfg)
    sub = sub_row(ledger)
    assert parse_iso(sub["paid_until"]) == PAID + timedelta(days=60)
    assert summary["sync"]["synced"] == 1
    line = dry_lines(cfg)[sub["username"]]
    assert line["exp_date"] == int((PAID + timedelta(days=63)).timestamp())
    assert emails(ledger) == [("activation", "1", "sent"), ("renewal", "51000777:2", "sent")]


def test_renewal_of_expired_line_extends_from_payment(cfg, ledger):
    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
    with freeze_time("2027-01-10T12:00:00Z"):  # 21 days after paid_until + grace: line expired
        run_process(cfg)
        assert sub_row(ledger)["desired_enabled"] == 0
        assert ("expired", f"expired:{sub_row(ledger)['paid_until']}", "sent") in emails(ledger)
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid="2027-01-10 09:00:00"))
        run_process(cfg)
    sub = sub_row(ledger)
    renewal_paid = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
    assert parse_iso(sub["paid_until"]) == renewal_paid + timedelta(days=30)
    assert sub["desired_enabled"] == 1
    assert dry_lines(cfg)[sub["username"]]["enabled"] in (True, 1)


@freeze_time(T0)
def test_refund_disables_line_and_emails(cfg, ledger):
    deliver(ledger, payload(2))
    run_process(cfg)
    deliver(ledger, payload(4))
    run_process(cfg)
    sub = sub_row(ledger)
    assert sub["paid_until"] is None and sub["desired_enabled"] == 0
    assert dry_lines(cfg)[sub["username"]]["enabled"] in (False, 0)
    assert [k for k, _c, s in emails(ledger) if s == "sent"] == ["activation", "refund"]


@freeze_time(T0)
def test_refund_before_activation_is_sent_never_sends_credentials(cfg, ledger):
    deliver(ledger, payload(2))
    deliver(ledger, payload(4))
    run_process(cfg)
    assert sub_row(ledger)["desired_enabled"] == 0
    assert eml_files(cfg) == [] or all(b"Senha" not in f.read_bytes() for f in eml_files(cfg))
    assert ("activation", "1", "sent") not in emails(ledger)


def test_dispute_suspends_and_operator_resume_restores(cfg, ledger):
    from iptvsync.ops import subs

    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
        deliver(ledger, payload(5))
        run_process(cfg)
        sub = sub_row(ledger)
        assert sub["desired_enabled"] == 0 and dry_lines(cfg)[sub["username"]]["enabled"] in (False, 0)
        subs.set_hold(ledger, cfg, str(sub["id"]), "resumed")
        run_process(cfg)
        assert dry_lines(cfg)[sub["username"]]["enabled"] in (True, 1)


def test_dispute_resolved_by_a_later_paid_charge(cfg, ledger):
    with freeze_time(T0):
        deliver(ledger, payload(2))
        deliver(ledger, payload(5))
        run_process(cfg)
        assert sub_row(ledger)["desired_enabled"] == 0
    with freeze_time("2026-12-19T12:00:00Z"):
        deliver(ledger, payload(2, sale="51000777", parcela=2, paid="2026-12-19 09:00:00"))
        run_process(cfg)
    sub = sub_row(ledger)
    assert sub["desired_enabled"] == 1
    assert dry_lines(cfg)[sub["username"]]["enabled"] in (True, 1)


def test_dispute_policy_ignore_keeps_access(tmp_path):
    from support.install import BASE_TOML, write_install

    cfg = load_config(write_install(tmp_path / "i", BASE_TOML.replace("grace_days = 3",
                                                                      'grace_days = 3\non_dispute = "ignore"')))
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        deliver(ledger, payload(2))
        deliver(ledger, payload(5))
        run_process(cfg)
    assert sub_row(ledger)["desired_enabled"] == 1


@pytest.mark.parametrize("policy, enabled_after_cancel", [("end_of_period", 1), ("immediately", 0)])
def test_subscription_cancelled(tmp_path, policy, enabled_after_cancel):
    from support.install import BASE_TOML, write_install

    toml = BASE_TOML.replace("grace_days = 3", f'grace_days = 3\non_subscription_cancelled = "{policy}"')
    cfg = load_config(write_install(tmp_path / "i", toml))
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
    with freeze_time("2026-12-01T12:00:00Z"):
        deliver(ledger, payload(103))
        run_process(cfg)
        sub = sub_row(ledger)
        assert sub["desired_enabled"] == enabled_after_cancel
        assert ("cancellation", "cancel", "sent") in emails(ledger)
        if policy == "end_of_period":  # no grace after a cancellation: access ends at paid_until
            assert sub["desired_expires_at"] == int((PAID + timedelta(days=30)).timestamp())
    with freeze_time("2026-12-21T12:00:00Z"):  # past paid_until
        run_process(cfg)
        assert sub_row(ledger)["desired_enabled"] == 0
        assert dry_lines(cfg)[sub["username"]]["enabled"] in (False, 0)


def test_overdue_keeps_access_through_grace_and_warns(cfg, ledger):
    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
    with freeze_time("2026-12-21T12:00:00Z"):  # past paid_until, within grace
        deliver(ledger, payload(102, sale="51000778", parcela=2))
        run_process(cfg)
        assert sub_row(ledger)["desired_enabled"] == 1
        assert ("payment_failed", "overdue:2", "sent") in emails(ledger)
    with freeze_time("2026-12-23T18:00:00Z"):  # past paid_until + 3 days
        run_process(cfg)
        assert sub_row(ledger)["desired_enabled"] == 0


@freeze_time(T0)
def test_complete_without_approval_counts_as_payment(cfg, ledger):
    deliver(ledger, payload(6))
    run_process(cfg)
    assert parse_iso(sub_row(ledger)["paid_until"]) == PAID + timedelta(days=30)
    assert ("activation", "1", "sent") in emails(ledger)


@freeze_time(T0)
def test_waiting_and_cancelled_boleto_grant_nothing(cfg, ledger):
    deliver(ledger, payload(1))
    deliver(ledger, payload(3))
    run_process(cfg)
    sub = sub_row(ledger)
    assert sub["paid_until"] is None and sub["desired_enabled"] == 0
    assert dry_lines(cfg) == {} and emails(ledger) == []


@freeze_time(T0)
def test_unmapped_product_waits_for_mapping_then_retry(tmp_path):
    from support.install import BASE_TOML, write_install

    from iptvsync.ledger import inbox

    path = write_install(tmp_path / "i")
    cfg = load_config(path)
    ledger = Ledger(cfg.ledger_path)
    deliver(ledger, payload(2, product="999"))
    assert run_process(cfg)["apply"]["unmapped"] == 1
    row = ledger.one("SELECT status, reason FROM inbox")
    assert row["status"] == "unmapped" and "999" in row["reason"]
    path.write_text(BASE_TOML + '\n[products.999]\npanel = "main"\ndays = 7\n')
    cfg = load_config(path)
    assert inbox.retry(ledger) == 1
    assert run_process(cfg)["apply"]["applied"] == 1
    assert parse_iso(sub_row(ledger)["paid_until"]) == PAID + timedelta(days=7)


@freeze_time(T0)
def test_one_off_sale_uses_sale_key_and_product_days(cfg, ledger):
    deliver(ledger, payload(2, sale="51000900", subscription=None))
    run_process(cfg)
    sub = sub_row(ledger, "sale:51000900")
    assert sub["recurring"] == 0
    assert sub["desired_expires_at"] == int((PAID + timedelta(days=30)).timestamp())  # no grace: no renewal


def test_reminder_for_one_off_and_expired_email(cfg, ledger):
    with freeze_time(T0):
        deliver(ledger, payload(2, sale="51000900", subscription=None))
        run_process(cfg)
    with freeze_time("2026-12-18T12:00:00Z"):  # 2.2 days before paid_until
        run_process(cfg)
        run_process(cfg)
    assert [e for e in emails(ledger) if e[0] == "reminder"] == [
        ("reminder", f"{sub_row(ledger, 'sale:51000900')['paid_until']}:3", "sent")]
    with freeze_time("2026-12-21T12:00:00Z"):
        run_process(cfg)
    assert [e[0] for e in emails(ledger)] == ["activation", "reminder", "expired"]


# -- order independence ---------------------------------------------------------------------

SALE_EVENTS = [1, 2, 6, 4, 5, 3]


def final_state(cfg, events: list[int]) -> tuple:
    import tempfile
    from pathlib import Path

    from support.install import write_install

    with tempfile.TemporaryDirectory() as tmp:
        c = load_config(write_install(Path(tmp)))
        led = Ledger(c.ledger_path)
        with freeze_time(T0):
            for event in events:
                deliver(led, payload(event))
            from iptvsync.clock import now
            from iptvsync.engine.apply import apply_inbox

            apply_inbox(led, c, now())
        charge = led.one("SELECT status, paid_at FROM charges")
        sub = led.one("SELECT paid_until, desired_enabled, desired_expires_at FROM subscriptions")
        led.close()
    return charge, sub


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.permutations(SALE_EVENTS), st.integers(min_value=1, max_value=len(SALE_EVENTS)))
def test_any_order_of_one_sales_events_gives_one_final_state(cfg, order, n):
    events = sorted(order[:n])  # a subset of the events...
    shuffled = order[:n]  # ...in the order they arrived
    assert final_state(cfg, shuffled) == final_state(cfg, events)


def test_reminders_can_be_switched_off(tmp_path):
    from support.install import BASE_TOML, write_install

    cfg = load_config(write_install(tmp_path / "i", BASE_TOML.replace("reminder_days = [3]", "reminder_days = []")))
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        deliver(ledger, payload(2, sale="51000900", subscription=None))
        run_process(cfg)
    with freeze_time("2026-12-19T12:00:00Z"):
        run_process(cfg)
    assert [e[0] for e in emails(ledger)] == ["activation"]


def test_parked_postbacks_come_back_by_themselves_after_their_backoff(tmp_path):
    """An unmapped (or failed) postback is retried by `process` once its run_after has passed,
    without `inbox retry`, and stops being retried after max_attempts (BASE_TOML: 5)."""
    from support.install import BASE_TOML, write_install

    path = write_install(tmp_path / "i")
    with freeze_time(T0) as clock:
        cfg = load_config(path)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, product="999"))
        assert run_process(cfg)["apply"]["unmapped"] == 1
        assert run_process(cfg)["apply"]["unmapped"] == 0  # backing off: not taken again at once
        clock.tick(timedelta(seconds=31))  # the first backoff is 30 s
        assert run_process(cfg)["apply"]["unmapped"] == 1
        path.write_text(BASE_TOML + '\n[products.999]\npanel = "main"\ndays = 7\n')  # the operator maps it
        cfg = load_config(path)
        assert run_process(cfg)["apply"]["applied"] == 0  # second backoff, 60 s, not over yet
        clock.tick(timedelta(seconds=61))
        assert run_process(cfg)["apply"]["applied"] == 1
        assert ledger.one("SELECT status, attempts FROM inbox") == {"status": "applied", "attempts": 3}


def test_a_parked_postback_stops_coming_back_after_max_attempts(tmp_path):
    from support.install import write_install

    path = write_install(tmp_path / "i")
    with freeze_time(T0) as clock:
        cfg = load_config(path)
        ledger = Ledger(cfg.ledger_path)
        deliver(ledger, payload(2, product="999"))
        tries = 0
        for _ in range(8):
            tries += run_process(cfg)["apply"]["unmapped"]
            clock.tick(timedelta(hours=2))  # past any backoff (capped at 1 h)
        assert tries == cfg.policy.max_attempts == 5
        assert ledger.one("SELECT status, attempts FROM inbox") == {"status": "unmapped", "attempts": 5}
