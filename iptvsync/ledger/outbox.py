"""The outbox: emails queued in the same transaction as the change that causes them.

Unique on (subscription, kind, cycle), so applying the same change twice queues one email.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from ..clock import iso

#: kinds that carry or depend on working credentials: held until the line is verified in sync
NEEDS_SYNC = {"activation", "renewal", "resumed"}


def queue(conn: sqlite3.Connection, *, subscription_id: int, kind: str, cycle: str, to_addr: str | None,
          now: datetime, context: dict | None = None) -> bool:
    """Queue one email unless that (subscription, kind, cycle) already exists. True if queued."""
    if not to_addr:
        return False
    cur = conn.execute(
        "INSERT INTO outbox (subscription_id, kind, cycle, to_addr, needs_sync, context, created_at)"
        " VALUES (:sub, :kind, :cycle, :to, :needs_sync, :context, :now)"
        " ON CONFLICT (subscription_id, kind, cycle) DO NOTHING",
        {"sub": subscription_id, "kind": kind, "cycle": cycle, "to": to_addr,
         "needs_sync": int(kind in NEEDS_SYNC), "context": json.dumps(context or {}), "now": iso(now)})
    return cur.rowcount == 1
