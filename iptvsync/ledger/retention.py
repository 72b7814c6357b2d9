"""What the ledger forgets: bookkeeping that would otherwise grow forever.

Postbacks, subscriptions, emails and the audit chain are the record and are never pruned.
Two tables are bookkeeping only: ``runs`` (one summary per ``process`` run, every minute under
cron) and ``rejections`` (one counter per day, status and reason). Both keep a window.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from ..clock import iso

RUNS_KEPT = timedelta(days=30)
REJECTIONS_KEPT = timedelta(days=90)


def prune(conn: sqlite3.Connection, at: datetime) -> dict[str, int]:
    """Delete run summaries and rejection counters older than their window, in the caller's tx."""
    runs = conn.execute("DELETE FROM runs WHERE started_at < :before", {"before": iso(at - RUNS_KEPT)}).rowcount
    rejections = conn.execute("DELETE FROM rejections WHERE day < :before",
                              {"before": (at - REJECTIONS_KEPT).strftime("%Y-%m-%d")}).rowcount
    return {"runs": runs, "rejections": rejections}
