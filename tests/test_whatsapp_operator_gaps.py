"""Operator words and commands that must tell WhatsApp apart from email (issue 21's gaps):
``status`` and ``process --dry-run`` counts per channel, ``subs grant --phone``, ``subs
phones`` (numbers for subscriptions older than WhatsApp), ``subs resend`` per channel, and a
gateway outage that is not a failed run while a bug still is."""

from __future__ import annotations

import json

import pytest
from support.install import BASE_TOML, write_install
from support.whatsapp import FakeEvolution
from test_cli_texts import render
from test_whatsapp_flow import buy, evolution_install, rows

from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ops.health import health

PRODUCT = "145388"  # BASE_TOML's product


# --- 1. counts per channel -------------------------------------------------------------------------------

def test_status_says_whatsapp_messages_failed_not_emails(tmp_path):
    with FakeEvolution() as fake:
        fake.not_on_whatsapp.add("5511987654321")
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        report = health(cfg)
        facts = report["facts"]
        assert (facts["outbox_dead"], facts["email_failed"], facts["whatsapp_failed"]) == (1, 0, 1)
        [problem] = [p for p in report["problems"] if "failed for good" in p]
        assert problem.startswith("1 WhatsApp message(s) failed for good or gave up (subscriptions 1)")
        assert "email(s)" not in problem
        with ledger.tx() as conn:  # the email fails too: both named
            conn.execute("UPDATE outbox SET status = 'failed' WHERE channel = 'email'")
        [problem] = [p for p in health(cfg)["problems"] if "failed for good" in p]
        assert problem.startswith("1 email(s) and 1 WhatsApp message(s) failed for good")
        assert render("subs", "retry", "1", install=cfg.path) == (
            "0 subscription(s), 1 email(s) and 1 WhatsApp message(s) queued again\n[exit 0]")


def test_process_dry_run_counts_whatsapp_apart(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        buy(Ledger(cfg.ledger_path))
        got = render("process", "--dry-run", install=cfg.path)
        assert got.splitlines()[-2:] == ["would apply 1 postback(s), send 1 email(s) and 1 WhatsApp message(s)",
                                         "[exit 0]"]
        plan = json.loads(render("process", "--dry-run", "--json", install=cfg.path).rsplit("\n", 1)[0])
        assert (plan["emails"], plan["whatsapp"], plan["messages"]) == (1, 1, 2)
        assert fake.requests == []


# --- 2. subs grant --phone --------------------------------------------------------------------------------

def test_grant_with_phone_sends_the_activation_on_whatsapp_too(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        got = render("subs", "grant", "--email", "ana@example.com", "--product", PRODUCT, "--days", "30", "--key",
                     "gift-1", "--phone", "(21) 99876-5432", install=cfg.path)
        assert "buyer_phone      +5521998765432" in got and got.endswith("[exit 0]")
        run_process(cfg)
        ledger = Ledger(cfg.ledger_path)
        [row] = rows(ledger)
        assert row["kind"] == "activation" and row["status"] == "sent" and row["to_addr"] == "+5521998765432"
        assert [m["to"] for m in fake.sent] == ["5521998765432"] and rows(ledger, "email")[0]["status"] == "sent"


def test_grant_phone_errors_are_one_usage_line(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        args = ("subs", "grant", "--email", "ana@example.com", "--product", PRODUCT, "--days", "30", "--key", "g")
        assert render(*args, "--phone", "123", install=cfg.path) == (
            "error: --phone '123' is not a WhatsApp number (invalid: 123); give it with the area code, e.g."
            " '11 98765-4321' or '+55 11 98765-4321'\n[exit 2]")
        assert Ledger(cfg.ledger_path).query("SELECT id FROM subscriptions") == []
    email_only = write_install(tmp_path / "e", BASE_TOML)
    assert render(*args, "--phone", "21 99876-5432", install=email_only) == (
        f"error: --phone: product {PRODUCT} does not send on WhatsApp (its channels: email)\n[exit 2]")


# --- 3. subs phones: numbers for subscriptions older than WhatsApp ---------------------------------------

def email_only_first(tmp_path, fake, phones: dict[str, str]):
    """Buyers who paid while the install sent email only; then WhatsApp is enabled."""
    plain = load_config(write_install(tmp_path / "i", BASE_TOML))
    ledger = Ledger(plain.ledger_path)
    for n, (email, phone) in enumerate(phones.items()):
        buy(ledger, sale=f"5100000{n}", subscription=f"110437{n}", email=email, phone=phone)
    run_process(plain)
    assert ledger.query("SELECT buyer_phone, phone_issue FROM subscriptions WHERE buyer_phone IS NOT NULL"
                        " OR phone_issue IS NOT NULL") == []
    return evolution_install(tmp_path, fake), ledger


def test_subs_phones_shows_then_backfills_and_the_next_message_goes_on_whatsapp(tmp_path):
    with FakeEvolution() as fake:
        cfg, ledger = email_only_first(tmp_path, fake, {"maria@example.com": "(11) 98765-4321",
                                                       "joao@example.com": "123"})
        dry = json.loads(render("subs", "phones", "--json", install=cfg.path).rsplit("\n", 1)[0])
        assert [(r["subscription"], r["phone"], r["issue"]) for r in dry["rows"]] == [
            (1, "+5511987654321", None), (2, None, "invalid: 123")]
        assert dry["written"] == 0 and ledger.one("SELECT buyer_phone FROM subscriptions WHERE id = 1")[
            "buyer_phone"] is None  # nothing written without --backfill
        got = render("subs", "phones", "--backfill", install=cfg.path)
        assert got.splitlines()[-2:] == ["1 number(s) found, 1 without a usable one, 0 without a stored postback;"
                                         " 2 written", "[exit 0]"]
        assert [(s["buyer_phone"], s["phone_issue"]) for s in ledger.query(
            "SELECT buyer_phone, phone_issue FROM subscriptions ORDER BY id")] == [
            ("+5511987654321", None), (None, "invalid: 123")]
        audit = ledger.query("SELECT subscription_id, detail FROM audit WHERE action = 'subscription.phone'")
        assert [a["subscription_id"] for a in audit] == [1, 2] and "98765" not in audit[0]["detail"]
        assert render("subs", "phones", "--backfill", "--json", install=cfg.path).startswith('{\n  "rows": []')
        assert render("subs", "resend", "1", install=cfg.path).startswith("queued activation on email")
        run_process(cfg)
        assert [m["to"] for m in fake.sent] == ["5511987654321"]


def test_subs_phones_leaves_a_subscription_without_stored_postback_for_its_next_one(tmp_path):
    with FakeEvolution() as fake:
        cfg, ledger = email_only_first(tmp_path, fake, {"maria@example.com": "(11) 98765-4321"})
        ledger.conn.execute("UPDATE inbox SET body = x'', body_encoding = 'pruned'")  # `inbox prune`'d
        report = json.loads(render("subs", "phones", "--backfill", "--json", install=cfg.path).rsplit("\n", 1)[0])
        assert (report["no_postback"], report["written"]) == (1, 0)
        assert ledger.one("SELECT buyer_phone, phone_issue FROM subscriptions") == {"buyer_phone": None,
                                                                                   "phone_issue": None}


# --- 4. subs resend says what it queued on each channel -------------------------------------------------

def test_subs_resend_names_each_channel_and_its_row(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="123")
        run_process(cfg)
        assert render("subs", "resend", "1", install=cfg.path) == (
            "queued activation on email (outbox 4) and WhatsApp (outbox 5); it goes out on the next `process`"
            "\n[exit 0]")
        assert render("subs", "resend", "2", install=cfg.path) == (
            "queued activation on email (outbox 6); it goes out on the next `process`\n[exit 0]")


# --- an outage delays messages; it is not a failed run ----------------------------------------------------

@pytest.mark.parametrize("outage", ["down", "429", "disconnected"])
def test_a_gateway_outage_does_not_fail_process(tmp_path, outage):
    fake = FakeEvolution().start()
    try:
        cfg = evolution_install(tmp_path, fake)
        if outage == "down":
            fake.stop()
        elif outage == "429":
            fake.fail_next(5, "429")
        else:
            fake.connected = False
        buy(Ledger(cfg.ledger_path))
        got = render("process", install=cfg.path)
        assert got.endswith("[exit 0]") and "error" not in got
        assert health(cfg)["facts"]["last_run_error"] is None
        assert any("WhatsApp" in p for p in health(cfg)["problems"])  # status says it, through its own check
    finally:
        fake.stop()


def test_a_bug_while_sending_fails_the_run_and_leaves_the_outcome_unknown(tmp_path, monkeypatch):
    from iptvsync.notify.evolution import EvolutionGateway

    def broken(self, message):
        raise KeyError("messageTimestamp")

    monkeypatch.setattr(EvolutionGateway, "send", broken)
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="21 99876-5432")
        got = render("process", install=cfg.path)
        assert got.splitlines()[-2:] == ["error: this run failed (1 error(s)): whatsapp 2 (activation): unexpected"
                                         " error while sending (KeyError: 'messageTimestamp')", "[exit 1]"]
        first, second = rows(ledger)
        assert first["status"] == "failed" and "outcome unknown" in first["last_error"] and first["sending_at"] is None
        assert second["attempts"] == 0  # not tried: the same bug would meet it
        assert [r["status"] for r in rows(ledger, "email")] == ["sent", "sent"]
        assert health(cfg)["facts"]["last_run_error"]


# --- 4. subs phone: correct or clear a stored number -----------------------------------------------------

def test_subs_phone_corrects_a_number_and_its_failed_message_goes_there(tmp_path):
    with FakeEvolution() as fake:
        fake.not_on_whatsapp.add("5511987654321")  # the buyer typed a number that is not theirs
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        assert rows(ledger)[0]["status"] in ("failed", "dead")
        got = render("subs", "phone", "1", "(21) 99876-5432", install=cfg.path)
        assert got == ("subscription 1: WhatsApp number is now +5521998765432; 1 queued message(s) go there"
                       "\n[exit 0]")
        assert ledger.one("SELECT buyer_phone FROM subscriptions WHERE id = 1")["buyer_phone"] == "+5521998765432"
        [audit] = ledger.query("SELECT detail FROM audit WHERE action = 'subscription.phone'")
        detail = json.loads(audit["detail"])
        assert (detail["phone"], detail["previous"]) == ("…5432", "…4321")
        assert "98765" not in audit["detail"] and "99876" not in audit["detail"]
        assert render("subs", "retry", "1", install=cfg.path).endswith("[exit 0]")
        run_process(cfg)
        assert rows(ledger)[0]["status"] == "sent" and fake.sent[-1]["to"] == "5521998765432"


def test_subs_phone_clear_is_email_only_and_a_later_postback_does_not_bring_it_back(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        assert len(fake.sent) == 1
        assert render("subs", "resend", "1", install=cfg.path).endswith("[exit 0]")  # one WhatsApp row queued
        assert render("subs", "phone", "1", "--clear", install=cfg.path) == (
            "subscription 1: WhatsApp number removed (email only); 1 queued message(s) will not be sent\n[exit 0]")
        buy(ledger, sale="51000002")  # another postback of the same subscription, the number in it
        run_process(cfg)
        sub = ledger.one("SELECT buyer_phone, phone_issue FROM subscriptions WHERE id = 1")
        assert sub["buyer_phone"] is None and "subs phone --clear" in sub["phone_issue"]
        assert len(fake.sent) == 1 and [r["status"] for r in rows(ledger)] == ["sent", "skipped"]


def test_subs_phone_usage_errors(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        buy(Ledger(cfg.ledger_path))
        run_process(cfg)
        assert render("subs", "phone", "1", install=cfg.path) == (
            "error: give the NUMBER, or --clear to remove it\n[exit 2]")
        assert render("subs", "phone", "1", "123", install=cfg.path) == (
            "error: NUMBER '123' is not a WhatsApp number (invalid: 123); give it with the area code, e.g."
            " '11 98765-4321' or '+55 11 98765-4321'\n[exit 2]")
        assert Ledger(cfg.ledger_path).query("SELECT action FROM audit WHERE action = 'subscription.phone'") == []
