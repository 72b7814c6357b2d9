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
from iptvsync.panels.dry_run import DryRunPanel

PAID = datetime(2026, 11, 20, 17, 37, 57, tzinfo=UTC)  # 14:37:57 in São Paulo
T0 = "2026-11-20T18:00:00Z"


def sub_row(ledger, key="sub:1104370"):
    return ledger.one("SELECT * FROM subscriptions WHERE key = ?", (key,))


def dry_lines(cfg) -> dict:
    panel = DryRunPanel("main", state_dir=cfg.ledger_path.parent)
    try:
        return panel.lines()
    finally:
        panel.close()


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
        # access that ends now gets "access ended", never "you keep access until"
        kind = "cancellation" if enabled_after_cancel else "access_ended"
        assert [e for e in emails(ledger) if e[1] == "cancel"] == [(kind, "cancel", "sent")]
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

SALE_EVENTS = [1, 2, 6, 4, 5, 3, 101]  # 101 carries venda[status] Finalizada: the same charge


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
    state = final_state(cfg, shuffled)
    charge, sub = state  # one charge, so the period is added exactly once or not at all
    assert sub["paid_until"] in (None, "2026-12-20T17:37:57Z")
    # The one order that counts: paid (2, 6, 101 Finalizada) after blocked (5) and no refund
    # ends the dispute in the shop's favour.
    won = 5 in shuffled and 4 not in shuffled and any(e in (2, 6, 101) for e in shuffled[shuffled.index(5):])
    if won:
        assert charge["status"] == "reinstated" and sub["desired_enabled"] == 1
    else:  # any order in which nothing paid follows the dispute: sorted, with 5 last
        assert state == final_state(cfg, sorted(events, key=lambda e: (e == 5, e)))


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


# -- payments as Monetizze really sends them (issue 8, items 8-12) ---------------------------

def audit_rows(ledger, action):
    return [json.loads(r["detail"]) for r in ledger.query("SELECT detail FROM audit WHERE action = ?", (action,))]


@freeze_time(T0)
def test_a_renewal_seen_only_as_event_101_extends_exactly_once(cfg, ledger):
    deliver(ledger, payload(2))
    run_process(cfg)
    # "Assinatura - Ativa" carrying venda[status] Finalizada and a payment date: parcela 2 was paid
    deliver(ledger, payload(101, sale="51000777", parcela=2))
    run_process(cfg)
    assert parse_iso(sub_row(ledger)["paid_until"]) == PAID + timedelta(days=60)
    for event in (2, 6, 101):  # the same charge again, by every event that can carry it
        deliver(ledger, payload(event, sale="51000777", parcela=2))
    run_process(cfg)
    assert parse_iso(sub_row(ledger)["paid_until"]) == PAID + timedelta(days=60)
    assert [e[0] for e in emails(ledger)] == ["activation", "renewal"]


@freeze_time(T0)
@pytest.mark.parametrize("started, paid_from", [("2026-11-20 14:37:55", "dataInicio"), ("", "received")])
@pytest.mark.parametrize("no_date", ["", "0000-00-00 00:00:00"])
def test_a_paid_sale_without_data_finalizada_still_pays(cfg, ledger, started, paid_from, no_date):
    p = payload(2)
    p["venda"].update(dataFinalizada=no_date, dataInicio=started)
    deliver(ledger, p)
    run_process(cfg)
    start = PAID - timedelta(seconds=2) if started else parse_iso(T0)
    assert parse_iso(sub_row(ledger)["paid_until"]) == start + timedelta(days=30)
    assert len(dry_lines(cfg)) == 1 and [e[0] for e in emails(ledger)] == ["activation"]
    [charge] = audit_rows(ledger, "charge.paid")
    assert charge["paid_at_from"].startswith(paid_from)


def bump_item(product: str, principal: str, name: str) -> dict:
    return {"produto": product, "chave": "k" + product, "nome": name, "descricao": "", "plano": "1",
            "cupom": None, "valor": "9.90", "quantidade": "1", "principal": principal}


@pytest.mark.parametrize("field", ["venda_item_order_bump", "produtos"])
def test_order_bump_items_get_their_own_line_and_unmapped_ones_are_recorded(tmp_path, field):
    from support.install import BASE_TOML, write_install

    toml = BASE_TOML + '\n[products.200001]\nname = "Canais extras"\npanel = "main"\ndays = 30\n'
    cfg = load_config(write_install(tmp_path / "i", toml))
    ledger = Ledger(cfg.ledger_path)
    p = payload(2)
    p["order_bump"] = "1"
    p[field] = [bump_item("145388", "1", "IPTV Mensal"), bump_item("200001", "0", "Canais extras"),
                bump_item("300001", "0", "E-book")]
    with freeze_time(T0):
        inbox_id = deliver(ledger, p)
        run_process(cfg)
        deliver(ledger, payload(2))  # the same sale again: still two lines, not four
        run_process(cfg)
    keys = [r["key"] for r in ledger.query("SELECT key FROM subscriptions ORDER BY id")]
    assert keys == ["sub:1104370", "sub:1104370+200001"]
    assert all(parse_iso(sub_row(ledger, k)["paid_until"]) == PAID + timedelta(days=30) for k in keys)
    assert len(dry_lines(cfg)) == 2
    row = ledger.one("SELECT status, reason FROM inbox WHERE id = ?", (inbox_id,))
    assert row["status"] == "applied" and "item 300001 unmapped" in row["reason"]
    [unmapped] = audit_rows(ledger, "order_bump.unmapped")
    assert unmapped["product_code"] == "300001"


def test_a_recurring_postback_without_assinatura_is_held_then_attached(cfg, ledger):
    from typer.testing import CliRunner

    from iptvsync.cli import _register, app
    from iptvsync.ops.health import health

    _register()  # every command module: this file alone imports none of them

    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
        renewal = payload(2, sale="51000888", subscription=None)
        renewal["plano"]["periodicidade"] = "Mensal"  # a plan's charge, but no assinatura block
        held_id = deliver(ledger, renewal)
        run_process(cfg)
        row = ledger.one("SELECT status, reason FROM inbox WHERE id = ?", (held_id,))
        assert row["status"] == "held" and "already holds subscription 1" in row["reason"]
        assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 1  # no second line
        problems = health(cfg)["problems"]
        assert any(f"inbox {held_id}: recurring plan without assinatura" in p for p in problems)
        result = CliRunner().invoke(app, ["inbox", "attach", str(held_id), "1"], catch_exceptions=False,
                                    env={"IPTVSYNC_CONFIG": str(cfg.path)})
        assert result.exit_code == 0 and "attached to subscription 1" in result.output
        run_process(cfg)
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 1
    assert parse_iso(sub_row(ledger)["paid_until"]) == PAID + timedelta(days=60)
    assert [e[0] for e in emails(ledger)] == ["activation", "renewal"]
    assert audit_rows(ledger, "inbox.attached")[0]["key"] == "sub:1104370"


@freeze_time(T0)
def test_a_one_off_products_new_sale_stays_a_new_purchase(cfg, ledger):
    deliver(ledger, payload(2))
    deliver(ledger, payload(2, sale="51000999", subscription=None))  # no plano[periodicidade]
    run_process(cfg)
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 2
    assert ledger.one("SELECT COUNT(*) n FROM inbox WHERE status = 'held'")["n"] == 0


@freeze_time(T0)
@pytest.mark.parametrize("sale", [None, "0"])
def test_the_dashboard_test_button_is_known_without_the_x_wing_name(cfg, ledger, sale):
    p = {"tipoEvento": {"codigo": 2, "descricao": "Finalizada / Aprovada"},
         "produto": {"codigo": "145388", "nome": "Produto exemplo"},
         "venda": {"status": "Finalizada", "dataFinalizada": "2026-11-20 14:37:57"}, "comprador": {}}
    if sale:
        p["venda"]["codigo"] = sale
    inbox_id = deliver(ledger, p)
    row = ledger.one("SELECT status, is_test, reason FROM inbox WHERE id = ?", (inbox_id,))
    assert (row["status"], row["is_test"], row["reason"]) == ("ignored", 1, "Monetizze test postback")
    summary = run_process(cfg)
    assert summary["apply"]["applied"] == 0 and dry_lines(cfg) == {}
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 0


@freeze_time(T0)
def test_a_subscription_without_plano_periodicidade_is_recurring(cfg, ledger):
    """Monetizze's current samples carry assinatura but no plano[periodicidade] (ExemploPOSTCallback
    PR #39): still a subscription, so the grace period applies and no renewal reminder goes out."""
    deliver(ledger, payload(2, periodicity=None))
    run_process(cfg)
    sub = sub_row(ledger)
    assert sub["recurring"] == 1
    assert sub["desired_expires_at"] == int((PAID + timedelta(days=33)).timestamp())  # + grace_days


@freeze_time(T0)
def test_event_105_with_a_paid_sale_pays_its_charge(cfg, ledger):
    """105 "Recuperação Parcelada - Ativa" (exemplo.php) was settled as ignored although
    venda[status] said Finalizada: payment is read from the sale, whatever the event."""
    p = payload(2)
    p["tipoEvento"] = {"codigo": 105, "descricao": "Recuperação Parcelada - Ativa"}
    p["postback_evento"] = "105"
    deliver(ledger, p)
    summary = run_process(cfg)
    assert summary["apply"]["applied"] == 1 and summary["sync"]["synced"] == 1
    assert parse_iso(sub_row(ledger)["paid_until"]) == PAID + timedelta(days=30)
    assert emails(ledger) == [("activation", "1", "sent")]
    assert ledger.one("SELECT status FROM charges")["status"] == "paid"


@freeze_time(T0)
def test_different_venda_codigo_and_codigo_venda_are_warned_in_the_audit(cfg, ledger):
    p = payload(2)
    p["codigo_venda"] = "42063567"  # venda[codigo] stays 51000001
    deliver(ledger, p)
    run_process(cfg)
    [row] = ledger.query("SELECT sale_code, detail FROM audit WHERE action = 'postback.sale_codes_differ'")
    detail = json.loads(row["detail"])
    assert row["sale_code"] == "51000001"
    assert (detail["venda_codigo"], detail["codigo_venda"], detail["used"]) == ("51000001", "42063567", "venda[codigo]")
    assert ledger.one("SELECT charge_key FROM charges")["charge_key"] == "51000001:1"


def test_a_renewal_of_a_subscription_never_seen_is_held_then_attached_extends_once(cfg, ledger):
    """A shop that sold before iptvsync: parcela 2 of an unknown assinatura must not make a
    second line. Held with the reason; `status` says so; attached, it extends the buyer's
    line once, and the next parcela finds that subscription by itself."""
    from iptvsync.ledger.inbox import attach
    from iptvsync.ops.health import health

    with freeze_time(T0):
        deliver(ledger, payload(2, subscription="7000001"))  # the buyer's existing subscription
        run_process(cfg)
        mine = sub_row(ledger, "sub:7000001")
        held = deliver(ledger, payload(2, sale="51000002", parcela=2))
        run_process(cfg)
        row = ledger.one("SELECT status, reason FROM inbox WHERE id = ?", (held,))
        assert row["status"] == "held" and "(parcela 2) of subscription 1104370, never seen" in row["reason"]
        assert f"`iptvsync inbox attach {held} {mine['id']}`" in row["reason"]
        assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 1 and len(dry_lines(cfg)) == 1
        assert any("held for an operator" in p and "never seen" in p for p in health(cfg)["problems"])
        attach(ledger, held, str(mine["id"]))
        run_process(cfg)
    after = sub_row(ledger, "sub:7000001")
    assert parse_iso(after["paid_until"]) == parse_iso(mine["paid_until"]) + timedelta(days=30)
    with freeze_time("2026-12-20T12:00:00Z"):
        deliver(ledger, payload(2, sale="51000003", parcela=3, paid="2026-12-20 09:00:00"))
        assert run_process(cfg)["apply"]["applied"] == 1
    assert parse_iso(sub_row(ledger, "sub:7000001")["paid_until"]) == parse_iso(mine["paid_until"]) + timedelta(days=60)
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 1 and len(dry_lines(cfg)) == 1
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE action = 'subscription.aliased'")["n"] == 1



def test_a_dispute_won_resumes_the_line_and_tells_the_buyer(cfg, ledger):
    """Bloqueada (5) is a dispute in progress; the same charge arriving later as Completa
    (6) or Finalizada ended it in the shop's favour: the line comes back, audited, and the
    buyer gets a "resumed" email (Monetizze's exact sequence is UNCONFIRMED)."""
    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
        deliver(ledger, payload(5))
        run_process(cfg)
        sub = sub_row(ledger)
        assert sub["desired_enabled"] == 0 and dry_lines(cfg)[sub["username"]]["enabled"] in (False, 0)
    with freeze_time("2026-11-28T12:00:00Z"):
        deliver(ledger, payload(6))
        run_process(cfg)
    sub = sub_row(ledger)
    assert sub["desired_enabled"] == 1 and dry_lines(cfg)[sub["username"]]["enabled"] in (True, 1)
    assert parse_iso(sub["paid_until"]) == PAID + timedelta(days=30)  # the same period, not a second
    assert ledger.one("SELECT status FROM charges")["status"] == "reinstated"
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE action = 'charge.reinstated'")["n"] == 1
    assert emails(ledger)[-1] == ("resumed", "51000001:1", "sent")
    # the files are named by Message-ID (random): find it among them, not by its place
    assert sum("liberado de novo" in f.read_text() for f in eml_files(cfg)) == 1
