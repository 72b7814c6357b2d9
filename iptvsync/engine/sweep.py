"""Stage 2 of ``process``: time passing. Expired lines are disabled, reminders queued.

Reminders go only to subscriptions that will not renew by themselves (one-off plans and
cancelled subscriptions); a recurring one is charged again by Monetizze.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from ..clock import epoch, iso, parse_iso
from ..config import Config
from ..ledger.db import Ledger
from ..ledger.outbox import queue
from .derive import recompute
from .model import PAYING

#: Expiries recomputed per transaction: one fsync for many, a short hold of the write lock.
EXPIRY_BATCH = 200


def sweep(ledger: Ledger, cfg: Config, now: datetime, limit: int | None = None, preempt=None) -> dict[str, int]:
    """Expire and remind; at most ``limit`` expiries (the earliest first), and none after a
    batch when ``preempt()`` says a payment waits; the rest next run."""
    counts = {"expired": 0, "reminders": 0}
    expired = ledger.query("SELECT id FROM subscriptions WHERE desired_enabled = 1 AND desired_expires_at <= :t"
                           " ORDER BY desired_expires_at LIMIT :limit",
                           {"t": epoch(now), "limit": -1 if limit is None else limit})
    for start in range(0, len(expired), EXPIRY_BATCH):
        if start and preempt is not None and preempt():
            break
        with ledger.tx() as conn:
            for row in expired[start:start + EXPIRY_BATCH]:
                _expire(conn, ledger, cfg, row["id"], now, counts)
    _remind(ledger, cfg, now, counts)
    return counts


def _expire(conn, ledger: Ledger, cfg: Config, sub_id: int, now: datetime, counts: dict) -> None:
    before, want = recompute(conn, sub_id, cfg, now)
    if not want.enabled and want.reason == "expired":
        counts["expired"] += 1
        ledger.audit("subscription.expired", actor="process", subscription_id=sub_id,
                     buyer_email=before["buyer_email"], access_until=want.access_until)
        queue(conn, subscription_id=sub_id, kind="expired", cycle=f"expired:{before['paid_until']}",
              to_addr=before["buyer_email"], now=now, context={"access_until": iso(want.access_until)})


def _remind(ledger: Ledger, cfg: Config, now: datetime, counts: dict) -> None:
    days = sorted(set(cfg.policy.reminder_days), reverse=True)
    if not days:
        return
    horizon = now + timedelta(days=max(days))
    candidates = ledger.query(
        "SELECT * FROM subscriptions WHERE desired_enabled = 1 AND paid_until IS NOT NULL"
        " AND paid_until <= :h AND paid_until > :now AND (recurring = 0 OR cancelled_at IS NOT NULL)",
        {"h": iso(horizon), "now": iso(now)})
    # the reminders already queued, in one read: a run that has nothing new to queue writes nothing
    queued = {(row["subscription_id"], row["cycle"]) for row in ledger.query(
        "SELECT o.subscription_id, o.cycle FROM subscriptions s JOIN outbox o ON o.subscription_id = s.id"
        " AND o.kind = 'reminder' WHERE s.desired_enabled = 1 AND s.paid_until IS NOT NULL"
        " AND s.paid_until <= :h AND s.paid_until > :now", {"h": iso(horizon), "now": iso(now)})}
    todo = []
    for sub in candidates:
        until = parse_iso(sub["paid_until"])
        due = [d for d in days if now >= until - timedelta(days=d)]
        if not due or (sub["id"], f"{sub['paid_until']}:{min(due)}") in queued:
            continue
        d = min(due)  # only the nearest reminder, even if the earlier ones were missed
        # a reminder whose moment came before the period was paid (a 2-day grant with a 3-day
        # reminder) would land next to the activation email that just told the same expiry
        started = _last_period_start(ledger, sub["id"])
        if started is None or until - timedelta(days=d) > started:
            todo.append((sub, until, d))
    for start in range(0, len(todo), EXPIRY_BATCH):
        with ledger.tx() as conn:
            for sub, until, d in todo[start:start + EXPIRY_BATCH]:
                if queue(conn, subscription_id=sub["id"], kind="reminder", cycle=f"{sub['paid_until']}:{d}",
                         to_addr=sub["buyer_email"], now=now,
                         context={"days_left": max(1, math.ceil((until - now).total_seconds() / 86400)),
                                  "access_until": sub["paid_until"]}):
                    counts["reminders"] += 1
                    ledger.audit("email.reminder_queued", actor="process", subscription_id=sub["id"],
                                 buyer_email=sub["buyer_email"], days_before=d)


def _last_period_start(ledger: Ledger, sub_id: int) -> datetime | None:
    """When the subscription's latest paid period (charge or grant) began."""
    marks = ", ".join("?" for _ in PAYING)
    row = ledger.one(f"SELECT MAX(t) AS t FROM (SELECT paid_at AS t FROM charges WHERE subscription_id = ?"
                     f" AND status IN ({marks}) UNION ALL SELECT granted_at FROM grants WHERE subscription_id = ?)",
                     (sub_id, *PAYING, sub_id))
    return parse_iso(row["t"]) if row else None
