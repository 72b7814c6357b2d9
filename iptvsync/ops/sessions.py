"""The admin console's sessions and its login throttle, both in the ledger.

A session id is 256 random bits, handed to the browser once and stored only as its SHA-256,
so neither a copy of the ledger nor a backup holds a live session. A session ends after
``IDLE`` without a request, ``ABSOLUTE`` after it began, at logout, or when an owner (or
``admin user logout``) ends it. Between the password and the TOTP step the session is a
``password`` one, good for ``TOTP_WINDOW`` and for nothing but the TOTP form.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso, now, parse_iso
from ..ledger.db import Ledger
from .actor import Actor

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
TOTP_WINDOW = timedelta(seconds=300)
FREE_FAILURES = 3                  # failures heard before the back-off starts
MAX_BLOCK = timedelta(minutes=15)  # the back-off doubles up to this


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(ledger: Ledger, operator_id: int, stage: str, client: str | None) -> tuple[str, str]:
    """A new session; returns (id for the cookie, CSRF token)."""
    session_id, csrf, t = secrets.token_urlsafe(32), secrets.token_urlsafe(32), iso(now())
    with ledger.tx() as conn:
        conn.execute("INSERT INTO operator_sessions (id_hash, operator_id, stage, csrf, client, created_at,"
                     " last_seen_at) VALUES (:h, :o, :s, :c, :cl, :t, :t)",
                     {"h": _hash(session_id), "o": operator_id, "s": stage, "c": csrf, "cl": client, "t": t})
    return session_id, csrf


def load(ledger: Ledger, session_id: str | None, at: datetime | None = None) -> dict[str, Any] | None:
    """The live session with its operator (reloaded on every request, so a removed operator or a
    changed role takes effect at once), its ``last_seen_at`` moved to now; None when there is
    none, or it expired (then it is deleted)."""
    if not session_id:
        return None
    t = at or now()
    row = ledger.one("SELECT s.id_hash, s.stage, s.csrf, s.created_at, s.last_seen_at, s.client, o.id AS operator_id,"
                     " o.name, o.role, o.language, o.totp_secret_enc IS NOT NULL AS has_totp"
                     " FROM operator_sessions s JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = ?",
                     (_hash(session_id),))
    if row is None:
        return None
    created, seen = parse_iso(row["created_at"]), parse_iso(row["last_seen_at"])
    limit = TOTP_WINDOW if row["stage"] == "password" else ABSOLUTE
    if t - seen > IDLE or t - created > limit:
        with ledger.tx() as conn:
            conn.execute("DELETE FROM operator_sessions WHERE id_hash = ?", (row["id_hash"],))
        return None
    if t - seen >= timedelta(seconds=60):  # one write a minute at most, not one per page
        with ledger.tx() as conn:
            conn.execute("UPDATE operator_sessions SET last_seen_at = :t WHERE id_hash = :h",
                         {"t": iso(t), "h": row["id_hash"]})
    return row


def end(ledger: Ledger, session_id: str | None) -> None:
    if session_id:
        with ledger.tx() as conn:
            conn.execute("DELETE FROM operator_sessions WHERE id_hash = ?", (_hash(session_id),))


# -- the login throttle ------------------------------------------------------------------------

def throttle_keys(name: str, address: str | None) -> list[str]:
    """One key per user name (hashed: a password typed in the name field is not stored) and
    one per address. Unknown names get a key like any other, so they are throttled alike."""
    return [f"user:{_hash((name or '').strip().lower())}", f"addr:{address or '-'}"]


def blocked_until(ledger: Ledger, keys: list[str], at: datetime | None = None) -> datetime | None:
    """The latest moment before which one of ``keys`` may not try again, or None."""
    t = at or now()
    marks = ",".join("?" * len(keys))
    row = ledger.one(f"SELECT MAX(blocked_until) AS until FROM login_throttle WHERE key IN ({marks})", tuple(keys))
    until = parse_iso(row["until"]) if row and row["until"] else None
    return until if until and until > t else None


def next_block(failures: int) -> timedelta:
    """The back-off after ``failures`` failures in a row: none for the first few, then 1 s,
    2 s, 4 s … up to ``MAX_BLOCK``."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    return min(timedelta(seconds=2 ** (failures - FREE_FAILURES)), MAX_BLOCK)


def failed(ledger: Ledger, keys: list[str], actor: Actor, known: str | None, at: datetime | None = None) -> None:
    """Count a failed login on each key and audit it (naming the operator only when the name
    is one: a stranger's guess, or a password typed in the name field, is not written down)."""
    t = at or now()
    with ledger.tx() as conn:
        worst = 0
        for key in keys:
            row = conn.execute("SELECT failures FROM login_throttle WHERE key = ?", (key,)).fetchone()
            failures = (row[0] if row else 0) + 1
            worst = max(worst, failures)
            conn.execute("INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until)"
                         " VALUES (:k, :f, :t, :u) ON CONFLICT (key) DO UPDATE SET failures = :f,"
                         " last_failure_at = :t, blocked_until = :u",
                         {"k": key, "f": failures, "t": iso(t), "u": iso(t + next_block(failures))})
        ledger.audit("admin.login_failed", actor=actor.name, operator=known or "(unknown)", failures=worst,
                     blocked_s=int(next_block(worst).total_seconds()), **actor.detail())


def succeeded(ledger: Ledger, keys: list[str]) -> None:
    with ledger.tx() as conn:
        conn.executemany("DELETE FROM login_throttle WHERE key = ?", [(k,) for k in keys])
