"""What ``status`` reports: queues, dead items, the last run. Problems make it exit non-zero."""

from __future__ import annotations

from datetime import timedelta

from ..clock import now, parse_iso
from ..config import Config
from ..errors import ConfigError
from ..ledger.db import Ledger
from ..ledger.queue import INBOX, OUTBOX, SYNC, InboxStatus, MailStatus, SyncStatus, count

STALE_PENDING = timedelta(minutes=15)
STALE_RUN = timedelta(minutes=10)


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
        reasons = [r[0] for r in conn.execute(  # why each is held, for `status`
            "SELECT 'inbox ' || id || ': ' || reason FROM inbox WHERE status = ? ORDER BY id LIMIT 3",
            (InboxStatus.HELD,))]
    finally:
        ledger.close()
    problems = []
    t = now()
    if facts["subs_dead"]:
        problems.append(f"{facts['subs_dead']} subscription(s) dead on the panel: `iptvsync subs list --dead`")
    if facts["outbox_dead"]:
        problems.append(f"{facts['outbox_dead']} email(s) dead or rejected: `iptvsync subs list --json`")
    if facts["inbox_failed"] or facts["inbox_unmapped"]:
        hints = " and ".join(f"`iptvsync inbox list --status {s}`" for s in (InboxStatus.FAILED, InboxStatus.UNMAPPED)
                             if facts[f"inbox_{s}"])
        problems.append(f"{facts['inbox_failed']} failed and {facts['inbox_unmapped']} unmapped postback(s): {hints}")
    if facts["inbox_held"]:
        problems.append(f"{facts['inbox_held']} postback(s) held for an operator: " + " | ".join(reasons))
    oldest = parse_iso(facts["inbox_oldest_pending"])
    if oldest and t - oldest > STALE_PENDING:
        problems.append(f"oldest pending postback is from {facts['inbox_oldest_pending']}: is cron running process?")
    last = parse_iso(facts["last_run"])
    if facts["inbox_pending"] and (last is None or t - last > STALE_RUN):
        problems.append("postbacks are waiting and `process` has not run recently")
    try:
        cfg.tls_files()
    except ConfigError as exc:
        problems.append(f"`serve` cannot start: {exc}")
    return {"facts": facts, "problems": problems}
