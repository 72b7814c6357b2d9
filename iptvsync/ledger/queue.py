"""The work queues' one vocabulary: statuses, what is due, backoff, failing, parking, requeueing.

Three tables are queues: ``inbox`` (postbacks to apply), ``subscriptions`` (lines to sync) and
``outbox`` (emails to send). Each row has a status, ``attempts``, ``run_after`` and an error
column; every stage claims, fails, parks and requeues through the functions here, so the
three behave alike and no status is spelled anywhere else. Functions that write take the
caller's connection: they run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from ..clock import iso


class InboxStatus(StrEnum):
    PENDING = "pending"  # waiting for ``process``
    APPLIED = "applied"  # its effect is in the ledger
    IGNORED = "ignored"  # stored as evidence, nothing to do (test button, non-payment event)
    UNMAPPED = "unmapped"  # its product has no [products.<code>] yet: retried on backoff
    FAILED = "failed"  # could not be applied: retried on backoff until max_attempts
    HELD = "held"  # needs an operator's decision (``inbox attach``); never retried by itself


class SyncStatus(StrEnum):
    PENDING = "pending"  # the panel must be made to match the ledger
    SYNCED = "synced"  # the line was read back matching
    DEAD = "dead"  # gave up: permanent refusal or max_attempts; ``subs retry``


class MailStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"  # the SMTP server accepted it (or the .eml is written)
    SKIPPED = "skipped"  # not to be sent any more (credentials of a line that ended disabled)
    FAILED = "failed"  # refused for good (5xx, a template that does not render)
    DEAD = "dead"  # temporary failures until max_attempts


class Queue(NamedTuple):  # not a dataclass: generating one costs ~1 ms of every command's start
    table: str
    status: str  # the status column
    error: str  # the column that says why
    pending: str
    dead: str
    #: parked statuses that ``process`` retries by itself once ``run_after`` has passed
    retried: tuple[str, ...] = ()
    #: statuses an operator's retry puts back in the queue
    stuck: tuple[str, ...] = ()


INBOX = Queue("inbox", "status", "reason", InboxStatus.PENDING, InboxStatus.FAILED,
              retried=(InboxStatus.FAILED, InboxStatus.UNMAPPED),
              stuck=(InboxStatus.FAILED, InboxStatus.UNMAPPED))
SYNC = Queue("subscriptions", "sync_status", "last_error", SyncStatus.PENDING, SyncStatus.DEAD,
             stuck=(SyncStatus.DEAD,))
OUTBOX = Queue("outbox", "status", "last_error", MailStatus.PENDING, MailStatus.DEAD,
               stuck=(MailStatus.DEAD, MailStatus.FAILED))


def retry_after(attempts: int, *, base_s: float = 30.0, cap_s: float = 3600.0) -> timedelta:
    """Capped exponential backoff across runs: 30 s, 60 s, 2 min … at most 1 h."""
    return timedelta(seconds=min(cap_s, base_s * 2 ** max(0, attempts - 1)))


def _in(statuses: Iterable[str]) -> str:
    return ", ".join(f"'{str(s)}'" for s in statuses)


def due(q: Queue, alias: str = "") -> str:
    """The SQL condition of the rows ``process`` may take now (``:now`` and ``:max_attempts``
    bound by the caller). The statuses are this module's constants, never caller data."""
    a = f"{alias}." if alias else ""
    taken = f"{a}{q.status} = '{q.pending}'"
    if q.retried:
        taken = f"({taken} OR ({a}{q.status} IN ({_in(q.retried)}) AND {a}attempts < :max_attempts))"
    return f"{taken} AND ({a}run_after IS NULL OR {a}run_after <= :now)"


def count(conn: sqlite3.Connection, q: Queue, *statuses: str) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {q.table} WHERE {q.status} IN ({_in(statuses)})").fetchone()[0]


def done(conn: sqlite3.Connection, q: Queue, row_id: int, status: str, note: str | None = None,
         **columns) -> int:
    """Settle a row (synced, sent, applied, skipped …): no backoff, attempts start over."""
    sets = "".join(f", {name} = :{name}" for name in columns)
    return conn.execute(f"UPDATE {q.table} SET {q.status} = :status, {q.error} = :note, run_after = NULL{sets}"
                        " WHERE id = :id", {"status": status, "note": note, "id": row_id, **columns}).rowcount


def fail(conn: sqlite3.Connection, q: Queue, row_id: int, *, attempts: int, error: str, now: datetime,
         max_attempts: int, final: str | None = None) -> str:
    """Record one failed attempt (``attempts`` counts it): back to pending after the backoff,
    ``dead`` once ``max_attempts`` is reached, or ``final`` at once (a refusal for good).
    Returns the new status."""
    status = final or (q.dead if attempts >= max_attempts else q.pending)
    conn.execute(f"UPDATE {q.table} SET attempts = :a, {q.status} = :s, run_after = :r, {q.error} = :e"
                 " WHERE id = :id", {"a": attempts, "s": status, "r": iso(now + retry_after(attempts)),
                                     "e": error[:500], "id": row_id})
    return status


def park(conn: sqlite3.Connection, q: Queue, row_id: int, status: str, reason: str, *, attempts: int,
         now: datetime) -> None:
    """Set a row aside with why, ``attempts`` (this one counted) stored; statuses in
    ``q.retried`` come back after the backoff."""
    conn.execute(f"UPDATE {q.table} SET {q.status} = :s, {q.error} = :r, run_after = :after, attempts = :a"
                 " WHERE id = :id",
                 {"s": status, "r": reason, "after": iso(now + retry_after(attempts)), "a": attempts, "id": row_id})


def requeue(conn: sqlite3.Connection, q: Queue, *, ids: Iterable[int] | None = None,
            statuses: Iterable[str] | None = None, where: str = "", params: dict | None = None) -> int:
    """Put rows back in the queue now, attempts from zero. Without ``ids`` it takes the rows in
    ``statuses`` (default: the queue's stuck ones); ``where`` narrows further. Returns how many."""
    cond, values = [], dict(params or {})
    if ids is not None:
        ids = list(ids)
        if not ids:
            return 0
        cond.append(f"id IN ({', '.join(str(int(i)) for i in ids)})")
    if ids is None or statuses is not None:
        cond.append(f"{q.status} IN ({_in(q.stuck if statuses is None else statuses)})")
    if where:
        cond.append(where)
    return conn.execute(f"UPDATE {q.table} SET {q.status} = '{q.pending}', attempts = 0, run_after = NULL,"
                        f" {q.error} = NULL WHERE {' AND '.join(cond)}", values).rowcount


def not_in(q: Queue, *statuses: str) -> str:
    """SQL: the row's status is none of these (for guards such as "not already synced")."""
    return f"{q.status} NOT IN ({_in(statuses)})"
