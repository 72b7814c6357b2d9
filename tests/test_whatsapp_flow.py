"""Buyer messages on WhatsApp through ``process``: the outbox's whatsapp rows, sent once, to a
real fake gateway on loopback (tests/support/whatsapp.py), with the email path beside them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from support.install import BASE_TOML, wait_for, write_install
from support.postbacks import deliver, payload
from support.whatsapp import FakeEvolution

from iptvsync.clock import SAO_PAULO, now
from iptvsync.config import load_config
from iptvsync.credentials import decrypt
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ops import subs

PHONE = "(11) 98765-4321"


def evolution_install(tmp_path, fake: FakeEvolution, extra: str = "", apikey: str | None = None):
    toml = BASE_TOML + (f'\n[whatsapp]\ngateway = "evolution"\nurl = "{fake.url}"\ninstance = "{fake.instance}"\n'
                        'channels = ["email", "whatsapp"]\nper_minute = 6000\njitter_ms = 0\ntimeout_s = 2\n' + extra)
    return load_config(write_install(tmp_path / "i", toml, env={"WHATSAPP_TOKEN": apikey or fake.apikey}))


def buy(ledger, *, sale="51000001", subscription="1104370", email="maria@example.com", phone=PHONE):
    p = payload(2, sale=sale, subscription=subscription, email=email,
                paid=now().astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S"))
    p["comprador"]["telefone"] = phone
    return deliver(ledger, p)


def rows(ledger, channel="whatsapp"):
    return ledger.query("SELECT * FROM outbox WHERE channel = ? ORDER BY id", (channel,))


def test_activation_goes_out_on_whatsapp_once_and_by_email(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        summary = run_process(cfg)
        assert summary["mail"]["sent"] == 1 and summary["whatsapp"]["sent"] == 1
        [sent] = fake.sent
        sub = ledger.one("SELECT * FROM subscriptions")
        assert sub["buyer_phone"] == "+5511987654321" and sub["phone_issue"] is None
        assert sent["to"] == "5511987654321"
        assert sub["username"] in sent["text"] and decrypt(sub["password_enc"], cfg.secrets.secret_key) in sent["text"]
        assert "<" not in sent["text"] and "*IPTV Mensal*" in sent["text"]
        [row] = rows(ledger)
        assert row["status"] == "sent" and row["message_id"] == sent["id"] and row["sending_at"] is None
        assert rows(ledger, "email")[0]["status"] == "sent"
        assert fake.requests[0]["headers"]["apikey"] == fake.apikey
        run_process(cfg)
        assert len(fake.sent) == 1  # acknowledged: never again
        state = ledger.one("SELECT * FROM gateway_state")
        assert state["last_ack_at"] and state["disconnected"] == 0


def test_credentials_wait_for_the_panel_sync_on_whatsapp_too(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        from iptvsync.engine.apply import apply_inbox
        from iptvsync.engine.whatsapp_stage import send_whatsapp

        apply_inbox(ledger, cfg, now())
        counts = send_whatsapp(ledger, cfg, now())
        assert counts["waiting"] == 1 and fake.sent == []


@pytest.mark.parametrize("phone,issue", [("", "missing"), ("00000000000", "missing"), ("123", "invalid: 123"),
                                         ("(11) 3333-4444", "not a mobile: …4444")])
def test_no_usable_phone_means_email_only_and_says_why(tmp_path, phone, issue):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger, phone=phone)
        summary = run_process(cfg)
        assert summary["mail"]["sent"] == 1 and rows(ledger) == [] and fake.requests == []
        sub = ledger.one("SELECT * FROM subscriptions")
        assert sub["buyer_phone"] is None and sub["phone_issue"] == issue


def test_product_without_whatsapp_channel_queues_none(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        toml = cfg.path.read_text().replace('bouquets = [1, 2, 3]', 'bouquets = [1, 2, 3]\nchannels = ["email"]')
        cfg.path.write_text(toml)
        cfg = load_config(cfg.path)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        assert rows(ledger) == [] and fake.requests == []
        assert ledger.one("SELECT buyer_phone, phone_issue FROM subscriptions") == {"buyer_phone": None,
                                                                                   "phone_issue": None}


def test_a_number_not_on_whatsapp_fails_alone(tmp_path):
    with FakeEvolution() as fake:
        fake.not_on_whatsapp.add("5511987654321")
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="21 99876-5432")
        summary = run_process(cfg)
        assert summary["whatsapp"]["sent"] == 1 and summary["whatsapp"]["failed"] == 1
        failed, sent = rows(ledger)
        assert failed["status"] == "failed" and "not on WhatsApp" in failed["last_error"]
        assert sent["status"] == "sent" and fake.sent[0]["to"] == "5521998765432"


def test_disconnected_instance_keeps_messages_and_never_delays_email(tmp_path):
    with FakeEvolution() as fake:
        fake.connected = False
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="21 99876-5432")
        summary = run_process(cfg)
        assert summary["mail"]["sent"] == 2 and summary["whatsapp"]["halted"] == 1
        first, second = rows(ledger)
        assert first["status"] == "pending" and first["attempts"] == 1 and "not connected" in first["last_error"]
        assert second["attempts"] == 0  # not tried: the gateway is down for everyone
        state = ledger.one("SELECT * FROM gateway_state")
        assert state["disconnected"] == 1 and state["last_ack_at"] is None
        fake.connected = True
        ledger.conn.execute("UPDATE outbox SET run_after = NULL")
        run_process(cfg)
        assert [r["status"] for r in rows(ledger)] == ["sent", "sent"] and len(fake.sent) == 2
        assert ledger.one("SELECT disconnected FROM gateway_state")["disconnected"] == 0


def test_gateway_unreachable_backs_off_and_dies_after_max_attempts(tmp_path):
    fake = FakeEvolution().start()
    cfg = evolution_install(tmp_path, fake)
    fake.stop()
    ledger = Ledger(cfg.ledger_path)
    buy(ledger)
    summary = run_process(cfg)
    assert summary["mail"]["sent"] == 1
    [row] = rows(ledger)
    assert row["status"] == "pending" and row["attempts"] == 1 and "unreachable" in row["last_error"]
    assert row["run_after"] > row["created_at"]
    for _ in range(cfg.policy.max_attempts - 1):
        ledger.conn.execute("UPDATE outbox SET run_after = NULL WHERE channel = 'whatsapp'")
        run_process(cfg)
    [row] = rows(ledger)
    assert row["status"] == "dead" and row["attempts"] == cfg.policy.max_attempts
    assert "unreachable" in row["last_error"]


def test_a_timeout_after_sending_is_not_sent_again_by_default(tmp_path):
    with FakeEvolution() as fake:
        fake.fail_next(1, "timeout_after_send")
        fake.stall_s = 3.5
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        [row] = rows(ledger)
        assert row["status"] == "failed" and row["unknowns"] == 1 and "outcome unknown" in row["last_error"]
        run_process(cfg)
        assert len(fake.sent) == 1
        subs.retry(ledger, str(row["subscription_id"]))  # the operator checked: nothing arrived
        run_process(cfg)
        assert len(fake.sent) == 2 and rows(ledger)[0]["status"] == "sent"


def test_unknown_resends_allows_exactly_that_many_more(tmp_path):
    with FakeEvolution() as fake:
        fake.fail_next(2, "close_after_send")
        cfg = evolution_install(tmp_path, fake, extra="unknown_resends = 1\n")
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        [row] = rows(ledger)
        assert row["status"] == "pending" and row["unknowns"] == 1
        ledger.conn.execute("UPDATE outbox SET run_after = NULL")
        run_process(cfg)
        [row] = rows(ledger)
        assert row["status"] == "failed" and row["unknowns"] == 2
        ledger.conn.execute("UPDATE outbox SET run_after = NULL")
        run_process(cfg)
        assert len(fake.sent) == 2  # the first send and the one resend the rule allows


@pytest.mark.parametrize("resends,expected", [(0, 1), (1, 2)])
def test_a_kill_between_send_and_record_sends_at_most_what_the_rule_allows(tmp_path, resends, expected):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake, extra=f"unknown_resends = {resends}\n")
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        from iptvsync.engine.apply import apply_inbox
        from iptvsync.engine.runner import build_panels
        from iptvsync.engine.sync import sync_panels

        apply_inbox(ledger, cfg, now())
        sync_panels(cfg.ledger_path, cfg, build_panels(cfg), now(), None)
        fake.fail_next(1, "timeout_after_send")
        fake.stall_s = 30
        env = {**os.environ, "IPTVSYNC_CONFIG": str(cfg.path)}
        proc = subprocess.Popen([sys.executable, "-m", "iptvsync", "process"], env=env, cwd=cfg.base_dir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: fake.sent, "the gateway to receive the message")
            assert rows(ledger)[0]["sending_at"] is not None  # in flight, recorded before the request left
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for _ in range(3):
            ledger.conn.execute("UPDATE outbox SET run_after = NULL")
            run_process(cfg)
        assert len(fake.sent) == expected
        [row] = rows(ledger)
        assert row["sending_at"] is None and row["unknowns"] == 1
        assert row["status"] == ("failed" if resends == 0 else "sent")


def test_subs_resend_covers_whatsapp(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        sub_id = ledger.one("SELECT id FROM subscriptions")["id"]
        subs.resend(ledger, str(sub_id), "activation")
        run_process(cfg)
        assert len(fake.sent) == 2 and fake.sent[0]["text"] == fake.sent[1]["text"]
        assert [r["status"] for r in rows(ledger)] == ["sent", "sent"]


def test_subs_show_has_the_number_or_why_not_and_each_messages_channel(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        buy(ledger, sale="51000002", subscription="1104371", email="joao@example.com", phone="123")
        run_process(cfg)
        first, second = subs.show(ledger, cfg, "1"), subs.show(ledger, cfg, "2")
        assert first["buyer_phone"] == "+5511987654321" and second["phone_issue"] == "invalid: 123"
        assert [(m["kind"], m["channel"], m["status"]) for m in first["emails"]] == [
            ("activation", "email", "sent"), ("activation", "whatsapp", "sent")]


def test_every_kind_goes_out_on_whatsapp_too_a_cancellation_here(tmp_path):
    with FakeEvolution() as fake:
        cfg = evolution_install(tmp_path, fake)
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        subs.cancel(ledger, cfg, "1", immediately=False)
        run_process(cfg)
        assert [r["kind"] for r in rows(ledger)] == ["activation", "cancellation"]
        assert len(fake.sent) == 2 and "cancelada" in fake.sent[1]["text"]
        assert rows(ledger, "email")[1]["kind"] == "cancellation"


def test_a_broken_text_override_fails_that_message_only(tmp_path):
    with FakeEvolution() as fake:
        (tmp_path / "wa" / "pt-BR").mkdir(parents=True)
        (tmp_path / "wa" / "pt-BR" / "activation.txt").write_text("{{ no_such_key }}")
        cfg = evolution_install(tmp_path, fake, extra=f'templates_dir = "{tmp_path / "wa"}"\n')
        ledger = Ledger(cfg.ledger_path)
        buy(ledger)
        run_process(cfg)
        [row] = rows(ledger)
        assert row["status"] == "failed" and "cannot render" in row["last_error"] and fake.requests == []
        assert rows(ledger, "email")[0]["status"] == "sent"
