"""What ``status`` reports: queues, dead items, the last run. Problems make it exit non-zero."""

from __future__ import annotations

from datetime import timedelta

from ..clock import iso, now, parse_iso
from ..config import Config
from ..errors import ConfigError
from ..ledger.db import Ledger
from ..ledger.outbox import EMAIL
from ..ledger.queue import INBOX, OUTBOX, SYNC, InboxStatus, MailStatus, SyncStatus, count
from . import watch
from .notify import whatsapp_status

STALE_PENDING = timedelta(minutes=15)
#: ``process`` runs every minute (timer or cron): a postback older than three intervals with no
#: run since it arrived means nothing is running it
PROCESS_GRACE = timedelta(minutes=3)
#: Unclassifiable postbacks this recent make ``status`` unhealthy (older ones were seen to).
UNCLASSIFIED_WINDOW = timedelta(days=7)
#: More rejections than this on the postback path within the last hour is a spike: whoever
#: posts there has the secret URL, so it is Monetizze being refused, or the URL has leaked.
REJECTION_SPIKE = 20
SHOWN = 5  # ids named in one problem line


def health(cfg: Config) -> dict:
    ledger = Ledger(cfg.ledger_path)
    try:
        conn = ledger.conn
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        facts = {
            "inbox_pending": count(conn, INBOX, InboxStatus.PENDING),
            "inbox_oldest_pending": conn.execute("SELECT MIN(received_at) FROM inbox WHERE status = ?",
                                                 (InboxStatus.PENDING,)).fetchone()[0],
            "inbox_failed": count(conn, INBOX, InboxStatus.FAILED),
            "inbox_unmapped": count(conn, INBOX, InboxStatus.UNMAPPED),
            "inbox_held": count(conn, INBOX, InboxStatus.HELD),
            "subs_pending_sync": count(conn, SYNC, SyncStatus.PENDING),
            "subs_dead": count(conn, SYNC, SyncStatus.DEAD),
            "outbox_pending": count(conn, OUTBOX, MailStatus.PENDING),
            "outbox_dead": count(conn, OUTBOX, MailStatus.DEAD, MailStatus.FAILED),
            "rejections_today": ledger.conn.execute(
                "SELECT COALESCE(SUM(count), 0) FROM rejections WHERE day = ?",
                (now().strftime("%Y-%m-%d"),)).fetchone()[0],
            "last_run": one("SELECT MAX(finished_at) FROM runs"),
        }
        # per channel (``outbox_*`` count every channel, as before WhatsApp; whatsapp_* are below)
        facts["email_pending"] = conn.execute("SELECT COUNT(*) FROM outbox WHERE channel = ? AND status = ?",
                                              (EMAIL, MailStatus.PENDING)).fetchone()[0]
        facts["email_failed"] = conn.execute("SELECT COUNT(*) FROM outbox WHERE channel = ? AND status IN (?, ?)",
                                             (EMAIL, MailStatus.DEAD, MailStatus.FAILED)).fetchone()[0]
        facts["outbox_dead_subscriptions"] = [r[0] for r in conn.execute(
            "SELECT DISTINCT subscription_id FROM outbox WHERE status IN (?, ?) ORDER BY subscription_id LIMIT 5",
            (MailStatus.DEAD, MailStatus.FAILED))]
        reasons = [r[0] for r in conn.execute(  # why each is held, for `status`
            "SELECT 'inbox ' || id || ': ' || reason FROM inbox WHERE status = ? ORDER BY id LIMIT 3",
            (InboxStatus.HELD,))]
        t = now()
        no_email = [r[0] for r in ledger.conn.execute(
            "SELECT id FROM subscriptions WHERE paid_until IS NOT NULL"
            " AND (buyer_email IS NULL OR buyer_email NOT LIKE '_%@_%') ORDER BY id")]
        unclassified = [r[0] for r in ledger.conn.execute(
            "SELECT id FROM inbox WHERE kind = 'unclassified' AND is_test = 0 AND received_at >= ? ORDER BY id",
            (iso(t - UNCLASSIFIED_WINDOW),))]
        path_rejections = ledger.conn.execute(
            "SELECT status, reason, SUM(count) FROM path_rejections WHERE hour >= ?"
            " GROUP BY status, reason ORDER BY SUM(count) DESC",
            ((t - timedelta(hours=1)).strftime("%Y-%m-%dT%H"),)).fetchall()
        last_run = conn.execute("SELECT finished_at, error FROM runs WHERE id = (SELECT MAX(id) FROM runs)").fetchone()
        facts["last_run_error"] = last_run[1] if last_run else None
        key_problem = key_check(ledger, cfg)
        whatsapp_facts, whatsapp_problems = whatsapp_status(conn, cfg)  # issue 21
        facts.update(whatsapp_facts)
        facts["subs_paid_without_email"] = len(no_email)
        facts["inbox_unclassified_7d"] = len(unclassified)
        facts["postback_path_rejections_1h"] = sum(r[2] for r in path_rejections)
        facts["rejections_by_reason_today"] = {
            f"{status} {reason}": n for status, reason, n in ledger.conn.execute(
                "SELECT status, reason, count FROM rejections WHERE day = ? ORDER BY count DESC",
                (t.strftime("%Y-%m-%d"),))}
        watched = watch.problems(cfg, ledger.conn, t)  # receiver answers, key accepted, nobody waits
    finally:
        ledger.close()
    problems = []
    if facts["subs_dead"]:
        problems.append(f"{facts['subs_dead']} subscription(s) dead on the panel: `iptvsync subs list --dead`")
    if facts["outbox_dead"]:
        first = facts["outbox_dead_subscriptions"][0]
        problems.append(f"{_per_channel(facts['email_failed'], facts['whatsapp_failed'])} failed for good or gave"
                        " up (subscriptions "
                        f"{', '.join(map(str, facts['outbox_dead_subscriptions']))}): why in "
                        f"`iptvsync subs show {first}`, send again with `iptvsync subs retry {first}`")
    if facts["inbox_failed"] or facts["inbox_unmapped"]:
        hints = " and ".join(f"`iptvsync inbox list --status {s}`" for s in (InboxStatus.FAILED, InboxStatus.UNMAPPED)
                             if facts[f"inbox_{s}"])
        counts = " and ".join(f"{facts[f'inbox_{s}']} {s}" for s in (InboxStatus.FAILED, InboxStatus.UNMAPPED)
                              if facts[f"inbox_{s}"])  # "1 unmapped", never "0 failed and 1 unmapped"
        problems.append(f"{counts} postback(s): {hints}")
    if facts["inbox_held"]:
        problems.append(f"{facts['inbox_held']} postback(s) held for an operator: " + " | ".join(reasons))
    oldest = parse_iso(facts["inbox_oldest_pending"])
    if oldest and t - oldest > STALE_PENDING:
        problems.append(f"oldest pending postback is from {facts['inbox_oldest_pending']}: is cron running process?")
    last = parse_iso(facts["last_run"])
    # judged by the postback's age, not by a run that is not due yet (status and process timers
    # fire on the same minute): waiting past a few intervals with no run since it came is a stop
    if oldest and t - oldest > PROCESS_GRACE and (last is None or last < oldest):
        problems.append(f"a postback has waited {int((t - oldest).total_seconds() // 60)} min and `process` has"
                        " not run since it came: is its timer (or cron) running?")
    if facts["last_run_error"]:
        problems.append(f"the last `process` run ({last_run[0]}) failed: {facts['last_run_error']}")
    if key_problem:
        problems.append(key_problem)
    try:
        cfg.tls_files()
    except ConfigError as exc:
        problems.append(f"`serve` cannot start: {exc}")
    if no_email:
        problems.append(f"{len(no_email)} paid subscription(s) without a deliverable email, so the buyer never got"
                        f" the access data: {_ids(no_email)}; contact the buyer (`iptvsync subs show ID` has the sale)")
    if unclassified:
        problems.append(f"{len(unclassified)} postback(s) no rule could classify (a renamed Monetizze field?):"
                        f" {_ids(unclassified)}; read them with `iptvsync inbox show ID`, then `iptvsync inbox"
                        " replay ID` once iptvsync reads them")
    if facts["postback_path_rejections_1h"] > REJECTION_SPIKE:
        refused = ", ".join(f"{n}× {status} {reason}" for status, reason, n in path_rejections)
        problems.append(f"{facts['postback_path_rejections_1h']} requests to the postback URL refused in the last"
                        f" hour ({refused}): Monetizze's postbacks are being rejected, or the URL has leaked"
                        " (check the receiver's log; change [receiver] path and MONETIZZE_CHAVE_UNICA if so)")
    problems.extend(whatsapp_problems)
    problems.extend(watched)
    return {"facts": facts, "problems": problems}


def _per_channel(emails: int, whatsapp: int) -> str:
    """``2 email(s)``, ``1 WhatsApp message(s)`` or both, the zero ones left out."""
    words = [f"{emails} email(s)"] if emails or not whatsapp else []
    return " and ".join(words + ([f"{whatsapp} WhatsApp message(s)"] if whatsapp else []))


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


#: ``status`` tries the stored passwords of this many of the newest subscriptions with the keyring.
KEY_SAMPLE = 50


def key_check(ledger: Ledger, cfg: Config, sample: int = KEY_SAMPLE) -> str | None:
    """Why the stored panel passwords cannot be read with this install's keys, or None: a ledger
    restored from another install, a lost .env, a rekey that was interrupted. Reads only the
    newest ``sample`` subscriptions (a range of ids, never the whole table)."""
    rows = ledger.conn.execute(
        "SELECT id, password_enc FROM subscriptions WHERE id > (SELECT MAX(id) FROM subscriptions) - ?"
        " AND password_enc IS NOT NULL ORDER BY id DESC", (sample,)).fetchall()
    if not rows:
        return None
    if not cfg.secrets.secret_key:
        return (f"IPTVSYNC_SECRET_KEY is not set ({cfg.env_path}) but the ledger holds encrypted panel passwords:"
                " put back this install's .env")
    from ..credentials import _fernet  # cryptography (~9 ms): only for a ledger that holds passwords
    from .rekey import PENDING, opens

    keys = [_fernet(k) for k in cfg.keyring]
    bad = next((sub_id for sub_id, token in rows if not any(opens(k, token.encode()) for k in keys)), None)
    if bad is not None:
        return (f"subscription {bad}: its panel password opens with no key of this install (IPTVSYNC_SECRET_KEY,"
                f" IPTVSYNC_RETIRED_KEYS in {cfg.env_path}): a ledger from another install, or another .env?"
                " Put back the .env that goes with this ledger")
    if cfg.secrets.pending_key:
        return f"a rekey was interrupted ({PENDING} in {cfg.env_path}): run `iptvsync rekey` again"
    return None
