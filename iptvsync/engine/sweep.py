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


def sweep(ledger: Ledger, cfg: Config, now: datetime) -> dict[str, int]:
    counts = {"expired": 0, "reminders": 0}
    expired = ledger.query("SELECT id FROM subscriptions WHERE desired_enabled = 1 AND desired_expires_at <= :t",
                           {"t": epoch(now)})
    for row in expired:
        with ledger.tx() as conn:
            before, want = recompute(conn, row["id"], cfg, now)
            if not want.enabled and want.reason == "expired":
                counts["expired"] += 1
                ledger.audit("subscription.expired", actor="process", subscription_id=row["id"],
                             buyer_email=before["buyer_email"], access_until=want.access_until)
                queue(conn, subscription_id=row["id"], kind="expired", cycle=f"expired:{before['paid_until']}",
                      to_addr=before["buyer_email"], now=now, context={"access_until": iso(want.access_until)})
    days = sorted(set(cfg.policy.reminder_days), reverse=True)
    if not days:
        return counts
    horizon = now + timedelta(days=max(days))
    candidates = ledger.query(
        "SELECT * FROM subscriptions WHERE desired_enabled = 1 AND paid_until IS NOT NULL"
        " AND paid_until <= :h AND paid_until > :now AND (recurring = 0 OR cancelled_at IS NOT NULL)",
        {"h": iso(horizon), "now": iso(now)})
    for sub in candidates:
        until = parse_iso(sub["paid_until"])
        # a reminder whose moment came before the period was paid (a 2-day grant with a 3-day
        # reminder) would land next to the activation email that just told the same expiry
        started = _last_period_start(ledger, sub["id"])
        due = [d for d in days if now >= until - timedelta(days=d) and (started is None or
                                                                        until - timedelta(days=d) > started)]
        if not due:
            continue
        d = min(due)  # only the nearest reminder, even if the earlier ones were missed
        with ledger.tx() as conn:
            if queue(conn, subscription_id=sub["id"], kind="reminder", cycle=f"{sub['paid_until']}:{d}",
                     to_addr=sub["buyer_email"], now=now,
                     context={"days_left": max(1, math.ceil((until - now).total_seconds() / 86400)),
                              "access_until": sub["paid_until"]}):
                counts["reminders"] += 1
                ledger.audit("email.reminder_queued", actor="process", subscription_id=sub["id"],
                             buyer_email=sub["buyer_email"], days_before=d)
    return counts


def _last_period_start(ledger: Ledger, sub_id: int) -> datetime | None:
    """When the subscription's latest paid period (charge or grant) began."""
    marks = ", ".join("?" for _ in PAYING)
    row = ledger.one(f"SELECT MAX(t) AS t FROM (SELECT paid_at AS t FROM charges WHERE subscription_id = ?"
                     f" AND status IN ({marks}) UNION ALL SELECT granted_at FROM grants WHERE subscription_id = ?)",
                     (sub_id, *PAYING, sub_id))
    return parse_iso(row["t"]) if row else None
