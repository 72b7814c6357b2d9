"""The console's Painel: what sold and what failed, in figures read straight off the ledger.

Windows are São Paulo days: "today" starts at local midnight, "7d" and "30d" at local
midnight 6 and 29 days before. Everything failed or waiting on a human is ``health``'s count,
the same as ``iptvsync status``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import SAO_PAULO, epoch, iso, now
from ..config import Config, PanelConfig
from ..ledger.db import Ledger
from ..ledger.queue import InboxStatus, MailStatus, SyncStatus
from .health import health

WINDOWS = {"today": 0, "7d": 6, "30d": 29}
SHOWN = 10  # rows of each "needs attention" list


def window_starts(at: datetime) -> dict[str, datetime]:
    midnight = at.astimezone(SAO_PAULO).replace(hour=0, minute=0, second=0, microsecond=0)
    return {name: (midnight - timedelta(days=back)) for name, back in WINDOWS.items()}


def figures(ledger: Ledger, at: datetime) -> dict[str, dict[str, int]]:
    """sales, activations, renewals, cancellations, refunds per window: one read of each source
    over the longest window, through its index, counting the three windows at once."""
    starts = {name: iso(start) for name, start in window_starts(at).items()}
    params = {f"w{i}": starts[name] for i, name in enumerate(WINDOWS)}
    cases = ", ".join(f"COALESCE(SUM({{col}} >= :w{i}), 0)" for i in range(len(WINDOWS)))
    oldest = f":w{len(WINDOWS) - 1}"

    def counts(col: str, sql: str, extra: dict | None = None) -> list[int]:
        return list(ledger.conn.execute(f"SELECT {cases.format(col=col)} {sql}", {**params, **(extra or {})})
                    .fetchone())

    paid = f"FROM charges WHERE paid_at >= {oldest} AND status IN ('paid', 'complete')"
    sales = counts("paid_at", paid + " AND COALESCE(parcela, 1) <= 1")
    renewals = counts("paid_at", paid + " AND parcela > 1")
    refunds = counts("updated_at", f"FROM charges WHERE status = 'refunded' AND updated_at >= {oldest}")
    cancellations = counts("cancelled_at", f"FROM subscriptions WHERE cancelled_at >= {oldest}")
    # the audit by time: each window's first row by audit_at (one seek: rows are appended in time
    # order), then the action's rows from it counted in audit_action (action, id), index only
    activations = [ledger.conn.execute("SELECT COUNT(*) FROM audit WHERE action = 'panel.created' AND id >= :first",
                                       {"first": _first_audit_id(ledger, start)}).fetchone()[0]
                   for start in starts.values()]
    return {name: {"sales": sales[i], "activations": activations[i], "renewals": renewals[i],
                   "cancellations": cancellations[i], "refunds": refunds[i]} for i, name in enumerate(WINDOWS)}


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
    waiting = {(r["panel"], r["sync_status"]): r["n"] for r in ledger.query(  # the queue's few rows, by index
        "SELECT panel, sync_status, COUNT(*) AS n FROM subscriptions WHERE sync_status IN (:p, :d)"
        " GROUP BY panel, sync_status", {"p": SyncStatus.PENDING, "d": SyncStatus.DEAD})}
    checked = {r["panel"]: r for r in ledger.query("SELECT * FROM panel_state")}  # one row a panel
    panels = [{"name": name, "kind": panel.kind, "lines_pending": waiting.get((name, SyncStatus.PENDING), 0),
               "lines_dead": waiting.get((name, SyncStatus.DEAD), 0), **_panel_state(checked.get(name), panel)}
              for name, panel in cfg.panels.items()]
    last_ok = _last(ledger, "panel.created", "panel.updated")
    last_failed = _last(ledger, "panel.failed")
    last_postback = ledger.one("SELECT received_at, source FROM inbox ORDER BY id DESC LIMIT 1")
    last_run = ledger.one("SELECT started_at, finished_at, summary FROM runs ORDER BY id DESC LIMIT 1")
    return {
        "at": iso(t),
        "figures": figures(ledger, t),
        # lines that should be on (the panel follows within a process run): counted in subs_expiry
        "active_lines": conn.execute("SELECT COUNT(*) FROM subscriptions WHERE desired_enabled = 1").fetchone()[0],
        "expiring_3d": in_days(3),
        "expiring_7d": in_days(7),
        "health": report["facts"],
        "problems": report["problems"],
        "attention": attention,
        "panels": panels,
        "panel_last_ok_at": last_ok["at"] if last_ok else None,
        "panel_last_failed": last_failed,
        "last_postback_at": last_postback["received_at"] if last_postback else None,
        "rejections_today": report["facts"]["rejections_today"],
        "last_run_at": last_run["finished_at"] if last_run else None,
    }


def _panel_state(row: dict | None, panel: PanelConfig) -> dict[str, Any]:
    """A panel as its last live check saw it (``doctor`` or "check panels"; never a call per
    view): verdict, detail, when, and for a reseller its credits, ``low`` at or below
    ``[panels.X] low_credits``."""
    if row is None:
        return {"check": None, "check_detail": None, "checked_at": None, "credits": None, "low_credits": False,
                "low_credits_at": panel.low_credits}
    credits = row["credits"] if panel.caps.has_credits else None
    if credits is not None and float(credits).is_integer():
        credits = int(credits)
    return {"check": row["status"], "check_detail": row["detail"], "checked_at": row["checked_at"],
            "credits": credits, "low_credits": credits is not None and credits <= panel.low_credits,
            "low_credits_at": panel.low_credits}


def _last(ledger: Ledger, *actions: str) -> dict[str, Any] | None:
    """The newest audit row of ``actions``, each found by the audit_action index (action, id)."""
    ids = [r["id"] for a in actions if (r := ledger.one("SELECT MAX(id) AS id FROM audit WHERE action = ?", (a,)))
           and r["id"] is not None]
    if not ids:
        return None
    return ledger.one("SELECT at, action, detail FROM audit WHERE id = ?", (max(ids),))


def _first_audit_id(ledger: Ledger, since: str) -> int:
    row = ledger.one("SELECT id FROM audit INDEXED BY audit_at WHERE at >= :since ORDER BY at, id LIMIT 1",
                     {"since": since})
    return row["id"] if row else 2**62
