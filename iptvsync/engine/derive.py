"""Recompute a subscription's derived columns (paid_until, desired state) inside a transaction.

Called after every change that could move them: a charge, a grant, a cancellation, an
operator hold, or time passing (the sweep). Nothing else writes these columns.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ..clock import epoch, iso, parse_iso
from ..config import Config
from ..ledger.queue import SyncStatus
from .model import PAYING, Desired, Period, SubFacts, desired_state, paid_until


def facts(conn: sqlite3.Connection, sub: dict, cfg: Config) -> SubFacts:
    charges, periods = [], []  # charges: (status, paid_at)
    # one statement for both tables: this runs for every postback applied
    for source, key, status, at, days, months in conn.execute(
            "SELECT 'c', charge_key, status, paid_at, days, months FROM charges WHERE subscription_id = :id"
            " UNION ALL SELECT 'g', grant_key, NULL, granted_at, days, 0 FROM grants WHERE subscription_id = :id",
            {"id": sub["id"]}):
        if source == "c":
            charges.append((status, at))
            if status in PAYING and at:
                periods.append(Period(parse_iso(at), "c:" + key, days, months))
        else:
            periods.append(Period(parse_iso(at), "g:" + key, days))
    # A dispute is over once a charge paid after the disputed one comes in (a renewal).
    disputed = False
    for status, at in charges:
        if status == "blocked":
            later_paid = any(other in ("paid", "complete") and paid_at and at and paid_at > at
                             for other, paid_at in charges)
            disputed = disputed or not later_paid
    return SubFacts(
        paid_until=paid_until(periods), recurring=bool(sub["recurring"]),
        cancelled=sub["cancelled_at"] is not None, cancel_mode=sub["cancel_mode"], disputed=disputed,
        hold=sub["hold"], grace_days=cfg.policy.grace_days, on_dispute=cfg.policy.on_dispute,
        refunded=any(status == "refunded" for status, _ in charges))


def recompute(conn: sqlite3.Connection, sub_id: int, cfg: Config, now: datetime,
              current: dict | None = None) -> tuple[dict, Desired]:
    """Refresh paid_until and the desired line state; mark the line for sync when it moved.

    Returns the subscription row as it was before, and the new desired state (with the
    paid_until it stored). ``current`` is that row when the caller has just read it.
    """
    sub = current if current is not None else dict(
        conn.execute("SELECT * FROM subscriptions WHERE id = ?", (sub_id,)).fetchone())
    f = facts(conn, sub, cfg)
    want = desired_state(f, now)
    expires = epoch(want.access_until) if want.access_until else None
    changed = (int(want.enabled), expires) != (sub["desired_enabled"], sub["desired_expires_at"])
    conn.execute(
        "UPDATE subscriptions SET paid_until = :paid_until, desired_enabled = :enabled,"
        " desired_expires_at = :expires, updated_at = :now"
        + (", sync_status = :status, attempts = 0, run_after = NULL, last_error = NULL" if changed else "")
        + " WHERE id = :id",
        {"paid_until": iso(f.paid_until), "enabled": int(want.enabled), "expires": expires,
         "now": iso(now), "id": sub_id, "status": SyncStatus.PENDING})
    return sub, want
