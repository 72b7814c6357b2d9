"""What ``status`` reports: queues, dead items, the last run. Problems make it exit non-zero."""

from __future__ import annotations

from datetime import timedelta

from ..clock import now, parse_iso
from ..config import Config
from ..ledger.db import Ledger

STALE_PENDING = timedelta(minutes=15)
STALE_RUN = timedelta(minutes=10)


def health(cfg: Config) -> dict:
    ledger = Ledger(cfg.ledger_path)
    try:
        one = lambda sql: ledger.conn.execute(sql).fetchone()[0]  # noqa: E731
        facts = {
            "inbox_pending": one("SELECT COUNT(*) FROM inbox WHERE status = 'pending'"),
            "inbox_oldest_pending": one("SELECT MIN(received_at) FROM inbox WHERE status = 'pending'"),
            "inbox_failed": one("SELECT COUNT(*) FROM inbox WHERE status = 'failed'"),
            "inbox_unmapped": one("SELECT COUNT(*) FROM inbox WHERE status = 'unmapped'"),
            "subs_pending_sync": one("SELECT COUNT(*) FROM subscriptions WHERE sync_status = 'pending'"),
            "subs_dead": one("SELECT COUNT(*) FROM subscriptions WHERE sync_status = 'dead'"),
            "outbox_pending": one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"),
            "outbox_dead": one("SELECT COUNT(*) FROM outbox WHERE status IN ('dead', 'failed')"),
            "rejections_today": ledger.conn.execute(
                "SELECT COALESCE(SUM(count), 0) FROM rejections WHERE day = ?",
                (now().strftime("%Y-%m-%d"),)).fetchone()[0],
            "last_run": one("SELECT MAX(finished_at) FROM runs"),
        }
    finally:
        ledger.close()
    problems = []
    t = now()
    if facts["subs_dead"]:
        problems.append(f"{facts['subs_dead']} subscription(s) dead on the panel: `iptvsync subs list --dead`")
    if facts["outbox_dead"]:
        problems.append(f"{facts['outbox_dead']} email(s) dead or rejected: `iptvsync subs list --json`")
    if facts["inbox_failed"] or facts["inbox_unmapped"]:
        problems.append(f"{facts['inbox_failed']} failed and {facts['inbox_unmapped']} unmapped postback(s):"
                        " `iptvsync inbox list --status failed`")
    oldest = parse_iso(facts["inbox_oldest_pending"])
    if oldest and t - oldest > STALE_PENDING:
        problems.append(f"oldest pending postback is from {facts['inbox_oldest_pending']}: is cron running process?")
    last = parse_iso(facts["last_run"])
    if facts["inbox_pending"] and (last is None or t - last > STALE_RUN):
        problems.append("postbacks are waiting and `process` has not run recently")
    return {"facts": facts, "problems": problems}
