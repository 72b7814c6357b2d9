"""Issue 11: emails that match what happened, and one buyer's failure never blocking another's."""

from __future__ import annotations

from email import message_from_bytes, policy

from freezegun import freeze_time
from support.install import BASE_TOML, write_install
from support.postbacks import deliver, payload

from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ops import subs

T0 = "2026-11-20T18:00:00Z"


def kinds(ledger, sub_id=None) -> list[str]:
    where = " WHERE subscription_id = ?" if sub_id else ""
    return [r["kind"] for r in ledger.query("SELECT kind FROM outbox" + where + " ORDER BY id",
                                            (sub_id,) if sub_id else ())]


def mail_texts(cfg) -> dict[str, str]:
    """Plain text of every email written to the maildir, by recipient and subject."""
    out = {}
    for path in sorted((cfg.ledger_path.parent / "mail").glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        out[f"{msg['To']} | {msg['Subject']}"] = msg.get_body(("plain",)).get_content()
    return out


@freeze_time(T0)
def test_cancel_immediately_says_access_ended(cfg, ledger):
    deliver(ledger, payload(2))
    run_process(cfg)
    subs.cancel(ledger, cfg, "maria@example.com", immediately=True)
    run_process(cfg)
    assert kinds(ledger) == ["activation", "access_ended"]
    [text] = [t for k, t in mail_texts(cfg).items() if "encerrado" in k]
    assert "acesso foi encerrado" in text and "continua" not in text and "vai até" not in text


@freeze_time(T0)
def test_a_revoked_buyer_gets_no_second_cancellation_email(cfg, ledger):
    deliver(ledger, payload(2))
    run_process(cfg)
    deliver(ledger, payload(4))  # refunded: line off, refund email
    run_process(cfg)
    deliver(ledger, payload(103))  # Monetizze then cancels the subscription
    run_process(cfg)
    subs.cancel(ledger, cfg, "maria@example.com", immediately=True)  # and so does the operator
    run_process(cfg)
    assert kinds(ledger) == ["activation", "refund"]


@freeze_time(T0)
def test_cancelling_a_manual_grant_does_not_speak_of_charges(cfg, ledger):
    sub, _ = subs.grant(ledger, cfg, email="joao@example.com", product="145388", days=10, key="gift-1")
    run_process(cfg)
    subs.cancel(ledger, cfg, str(sub["id"]), immediately=False)
    run_process(cfg)
    assert kinds(ledger) == ["activation", "cancellation"]
    [text] = [t for k, t in mail_texts(cfg).items() if "cancelada" in k]
    assert "cobrança" not in text and "continua com acesso" in text


@freeze_time(T0)
def test_a_recurring_cancellation_still_says_no_more_charges(cfg, ledger):
    deliver(ledger, payload(2))
    run_process(cfg)
    deliver(ledger, payload(103))
    run_process(cfg)
    [text] = [t for k, t in mail_texts(cfg).items() if "cancelada" in k]
    assert "Não haverá novas cobranças" in text


def test_a_grant_shorter_than_the_first_reminder_gets_no_reminder_with_its_activation(cfg, ledger):
    with freeze_time(T0):
        subs.grant(ledger, cfg, email="joao@example.com", product="145388", days=2, key="short")
        run_process(cfg)
        run_process(cfg)
    assert kinds(ledger) == ["activation"]
    with freeze_time("2026-11-21T18:00:00Z"):  # a day later: still nothing, it was told the expiry
        run_process(cfg)
    assert kinds(ledger) == ["activation"]


def test_a_longer_grant_still_gets_its_reminder(cfg, ledger):
    with freeze_time(T0):
        subs.grant(ledger, cfg, email="joao@example.com", product="145388", days=10, key="long")
        run_process(cfg)
    with freeze_time("2026-11-27T19:00:00Z"):  # 3 days before the end
        run_process(cfg)
    assert kinds(ledger) == ["activation", "reminder"]


def test_one_buyers_broken_email_never_blocks_anothers(tmp_path):
    """A template that fails for one buyer (here: an override that trips on one name) fails that
    email only; the others go out in the same run."""
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "activation.txt").write_text(
        '{% if buyer_name == "Quebra" %}{{ no_such_value }}{% endif %}Olá {{ username }}\n', "utf-8")
    toml = BASE_TOML.replace('maildir = "mail/"', f'maildir = "mail/"\ntemplates_dir = "{templates}"')
    cfg = load_config(write_install(tmp_path / "i", toml))
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        bad = payload(2, sale="51000010", subscription=None, email="quebra@example.com")
        bad["comprador"]["nome"] = "Quebra"
        deliver(ledger, bad)
        deliver(ledger, payload(2, sale="51000011", subscription=None, email="ana@example.com"))
        summary = run_process(cfg)
    assert summary["mail"]["sent"] == 1 and summary["mail"]["failed"] == 1
    rows = {r["to_addr"]: r for r in ledger.query("SELECT to_addr, status, last_error FROM outbox")}
    assert rows["ana@example.com"]["status"] == "sent"
    assert rows["quebra@example.com"]["status"] == "failed"
    assert "no_such_value" in rows["quebra@example.com"]["last_error"]


def test_subs_retry_requeues_failed_emails_and_counts_them(tmp_path):
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "activation.txt").write_text("{{ no_such_value }}\n", "utf-8")
    toml = BASE_TOML.replace('maildir = "mail/"', f'maildir = "mail/"\ntemplates_dir = "{templates}"')
    cfg = load_config(write_install(tmp_path / "i", toml))
    ledger = Ledger(cfg.ledger_path)
    with freeze_time(T0):
        deliver(ledger, payload(2))
        run_process(cfg)
        assert ledger.one("SELECT status FROM outbox")["status"] == "failed"
        assert subs.retry(ledger) == (0, 1)
        assert ledger.one("SELECT status FROM outbox")["status"] == "pending"
        (templates / "activation.txt").unlink()  # the operator fixed the template
        assert run_process(cfg)["mail"]["sent"] == 1
        assert subs.retry(ledger) == (0, 0)


@freeze_time(T0)
def test_the_audit_and_subs_show_agree_on_paid_until_and_say_which_has_grace(cfg, ledger):
    import json

    deliver(ledger, payload(2))
    run_process(cfg)
    shown = subs.show(ledger, cfg, "maria@example.com")
    [row] = ledger.query("SELECT detail FROM audit WHERE action = 'charge.paid'")
    detail = json.loads(row["detail"])
    assert shown["paid_until"] == "2026-12-20T17:37:57Z" and detail["paid_until"] == shown["paid_until"]
    # access_until is paid_until + grace_days (3) while a renewal may still come
    assert shown["access_until"] == "2026-12-23T17:37:57Z"
    assert detail["access_until"].startswith("2026-12-23 17:37:57")
    assert shown["state"] == "active"
