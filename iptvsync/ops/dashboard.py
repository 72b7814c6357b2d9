"""The console's Painel: what sold and what failed, in figures read straight off the ledger.

Windows are São Paulo days: "today" starts at local midnight, "7d" and "30d" at local
midnight 6 and 29 days before. Everything failed or waiting on a human is ``health``'s count,
the same as ``iptvsync status``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import SAO_PAULO, epoch, iso, now
from ..config import Config
from ..ledger.db import Ledger
from ..ledger.queue import InboxStatus, MailStatus, SyncStatus
from .health import health

WINDOWS = {"today": 0, "7d": 6, "30d": 29}
SHOWN = 10  # rows of each "needs attention" list


def window_starts(at: datetime) -> dict[str, datetime]:
    midnight = at.astimezone(SAO_PAULO).replace(hour=0, minute=0, second=0, microsecond=0)
    return {name: (midnight - timedelta(days=back)) for name, back in WINDOWS.items()}


def figures(ledger: Ledger, at: datetime) -> dict[str, dict[str, int]]:
    """sales, activations, renewals, cancellations, refunds per window."""
    out: dict[str, dict[str, int]] = {}
    for name, start in window_starts(at).items():
        since = {"since": iso(start)}

        def one(sql: str, since: dict = since) -> int:
            return ledger.conn.execute(sql, since).fetchone()[0]

        out[name] = {
            "sales": one("SELECT COUNT(*) FROM charges WHERE paid_at >= :since AND COALESCE(parcela, 1) <= 1"
                         " AND status IN ('paid', 'complete')"),
            "renewals": one("SELECT COUNT(*) FROM charges WHERE paid_at >= :since AND parcela > 1"
                            " AND status IN ('paid', 'complete')"),
            "activations": one("SELECT COUNT(*) FROM audit WHERE action = 'panel.created' AND at >= :since"),
            "cancellations": one("SELECT COUNT(*) FROM subscriptions WHERE cancelled_at >= :since"),
            "refunds": one("SELECT COUNT(*) FROM charges WHERE status = 'refunded' AND updated_at >= :since"),
        }
    return out


def painel(ledger: Ledger, cfg: Config) -> dict[str, Any]:
    t = now()
    conn = ledger.conn
    in_days = lambda d: conn.execute(  # noqa: E731
        "SELECT COUNT(*) FROM subscriptions WHERE desired_enabled = 1 AND desired_expires_at BETWEEN :a AND :b",
        {"a": epoch(t), "b": epoch(t + timedelta(days=d))}).fetchone()[0]
    report = health(cfg)
    attention = {
        "inbox": ledger.query("SELECT id, received_at, sale_code, buyer_email, status, reason FROM inbox"
                              " WHERE status IN (:f, :u, :h) ORDER BY id DESC LIMIT :n",
                              {"f": InboxStatus.FAILED, "u": InboxStatus.UNMAPPED, "h": InboxStatus.HELD,
                               "n": SHOWN}),
        "subs": ledger.query("SELECT id, buyer_email, panel, last_error FROM subscriptions WHERE sync_status = :d"
                             " ORDER BY id DESC LIMIT :n", {"d": SyncStatus.DEAD, "n": SHOWN}),
        "emails": ledger.query("SELECT id, subscription_id, kind, status, last_error FROM outbox"
                               " WHERE status IN (:d, :f) ORDER BY id DESC LIMIT :n",
                               {"d": MailStatus.DEAD, "f": MailStatus.FAILED, "n": SHOWN}),
    }
    panels = []
    for name, panel in cfg.panels.items():
        counts = {r["sync_status"]: r["n"] for r in ledger.query(
            "SELECT sync_status, COUNT(*) AS n FROM subscriptions WHERE panel = ? GROUP BY sync_status", (name,))}
        last = ledger.one("SELECT MAX(applied_at) AS at FROM subscriptions WHERE panel = ?", (name,))
        panels.append({"name": name, "kind": panel.kind, "lines_dead": counts.get(SyncStatus.DEAD, 0),
                       "lines_pending": counts.get(SyncStatus.PENDING, 0),
                       "lines_synced": counts.get(SyncStatus.SYNCED, 0),
                       "last_synced_at": last["at"] if last else None})
    last_postback = ledger.one("SELECT received_at, source FROM inbox ORDER BY id DESC LIMIT 1")
    last_run = ledger.one("SELECT started_at, finished_at, summary FROM runs ORDER BY id DESC LIMIT 1")
    return {
        "at": iso(t),
        "figures": figures(ledger, t),
        "active_lines": conn.execute("SELECT COUNT(*) FROM subscriptions WHERE applied_enabled = 1").fetchone()[0],
        "expiring_3d": in_days(3),
        "expiring_7d": in_days(7),
        "health": report["facts"],
        "problems": report["problems"],
        "attention": attention,
        "panels": panels,
        "last_postback_at": last_postback["received_at"] if last_postback else None,
        "rejections_today": report["facts"]["rejections_today"],
        "last_run_at": last_run["finished_at"] if last_run else None,
    }
