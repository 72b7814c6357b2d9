"""Dry-run panel (``dry-run``): records what it would do and changes no real panel.

It simulates a panel well enough for the engine to converge: ``get`` after ``create`` finds the
line. Simulated lines live in ``<state_dir>/dry-run-<name>.db``, an SQLite file of its own (one
indexed row per line, so a call costs the same at 100 lines and at 100,000), and every would-be
write is appended to ``<state_dir>/dry-run-<name>.log``, one JSON object per line, for an
operator to read; past ``LOG_MAX_BYTES`` it is renamed ``.log.1`` (replacing the previous one)
and a new one begun. Reads are not logged. Neither file holds a password: a line keeps a salted
hash, enough for ``get`` to report whether the caller's password is the line's (a wrong one
reads back as ""). With ``state_dir=None`` the lines live in memory only and nothing is logged.

An install that kept its lines in ``dry-run-<name>.json`` (before the SQLite file) has them
imported once; the JSON file is then renamed ``.json.imported``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from iptvsync.clock import iso, now
from iptvsync.errors import PanelError
from iptvsync.panels.base import Capabilities, Line, LineSpec

#: The operator's log is rotated past this size (one previous file is kept).
LOG_MAX_BYTES = 8 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    salt TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    exp_date INTEGER,
    enabled INTEGER NOT NULL,
    max_connections INTEGER,
    bouquets TEXT NOT NULL,      -- JSON list, in the caller's order
    package INTEGER,
    notes TEXT
)"""


def password_hash(salt: str, password: str) -> str:
    from hashlib import sha256  # here: reading the config imports this adapter (status, logs…)

    return sha256(f"{salt}:{password}".encode()).hexdigest()


class DryRunPanel:
    """A simulated panel; the default for a fresh install."""

    kind = "dry-run"
    caps = Capabilities(real=False, needs_url=False)

    def __init__(self, name: str, state_dir: str | Path | None = None):
        self.name = name
        self._dir = Path(state_dir) if state_dir is not None else None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one engine may run several syncs on one panel

    def __repr__(self) -> str:
        return f"DryRunPanel(name={self.name!r}, state_dir={str(self._dir) if self._dir else None!r})"

    @property
    def state_path(self) -> Path | None:
        return self._dir / f"dry-run-{self.name}.db" if self._dir else None

    @property
    def log_path(self) -> Path | None:
        return self._dir / f"dry-run-{self.name}.log" if self._dir else None

    # -- the panel calls ------------------------------------------------------------------------
    def get(self, username: str, password: str, line_id: str | None = None) -> Line | None:
        with self._lock:
            row = self._row(username)
        return None if row is None else line_from_state(row, password)

    def create(self, spec: LineSpec) -> Line:
        with self._lock:
            conn = self._db()
            from secrets import token_hex  # here, like sha256: reading the config imports this module

            salt = token_hex(8)
            try:
                with conn:
                    conn.execute(
                        "INSERT INTO lines (username, salt, password_hash, exp_date, enabled, max_connections,"
                        " bouquets, package, notes) VALUES (:username, :salt, :hash, :exp_date, :enabled,"
                        " :max_connections, :bouquets, :package, :notes)",
                        {"username": spec.username, "salt": salt, "hash": password_hash(salt, spec.password),
                         **_columns(spec)})
            except sqlite3.IntegrityError:
                raise PanelError(f"dry-run panel {self.name!r}: username already exists",
                                 ambiguous=True, status="EXISTS") from None
            self._log("create", spec)
            row = self._row(spec.username)
        return line_from_state(row, spec.password)

    def update(self, line: Line, spec: LineSpec) -> Line:
        with self._lock:
            conn = self._db()
            with conn:
                changed = conn.execute(
                    "UPDATE lines SET exp_date = :exp_date, enabled = :enabled, max_connections = :max_connections,"
                    " bouquets = :bouquets, package = :package, notes = :notes WHERE username = :username",
                    {"username": line.username, **_columns(spec)}).rowcount
            if not changed:
                raise PanelError(f"dry-run panel {self.name!r}: the line is not on the panel",
                                 transient=True, status="NOT_FOUND")
            self._log("update", spec)
            row = self._row(line.username)
        return line_from_state(row, line.password)

    def health(self) -> dict:
        return {"ok": True}

    # -- for people and tests: every line, as stored (no password, no hash) -------------------------
    def lines(self) -> dict[str, dict]:
        with self._lock:
            rows = self._db().execute("SELECT * FROM lines ORDER BY id").fetchall()
        return {row["username"]: public(row) for row in rows}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- storage ---------------------------------------------------------------------------------
    def _row(self, username: str) -> sqlite3.Row | None:
        if self._conn is None and self._dir is not None and not self.state_path.exists() \
                and not (self._dir / f"dry-run-{self.name}.json").exists():
            return None  # nothing created yet: a read (``process --dry-run``) leaves no file behind
        return self._db().execute("SELECT * FROM lines WHERE username = ?", (username,)).fetchone()

    def _db(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        path = self.state_path
        if path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            self._dir.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # a simulation: consistent, not fsynced per call
        conn.row_factory = sqlite3.Row
        conn.execute(SCHEMA)
        if path is not None:
            self._import_json(conn)
        self._conn = conn
        return conn

    def _import_json(self, conn: sqlite3.Connection) -> None:
        """Lines kept by an older version in ``dry-run-<name>.json``: taken over once."""
        old = self._dir / f"dry-run-{self.name}.json"
        if not old.exists():
            return
        state = json.loads(old.read_text())
        with conn:
            for row in state.get("lines", {}).values():
                conn.execute(
                    "INSERT OR IGNORE INTO lines (id, username, salt, password_hash, exp_date, enabled,"
                    " max_connections, bouquets, package, notes) VALUES (:id, :username, :salt, :password_hash,"
                    " :exp_date, :enabled, :max_connections, :bouquets, :package, :notes)",
                    {**row, "id": int(row["id"]), "enabled": int(row["enabled"]),
                     "bouquets": json.dumps(list(row.get("bouquets") or [])),
                     "package": row.get("package"), "notes": row.get("notes")})
        old.rename(old.with_name(old.name + ".imported"))

    def _log(self, call: str, spec: LineSpec) -> None:
        if self._dir is None:
            return
        entry = {"at": iso(now()), "panel": self.name, "call": call, "username": spec.username,
                 **spec_columns(spec), "expires": iso_from_unix(spec.expires_at)}
        path = self.log_path
        try:
            if path.stat().st_size >= LOG_MAX_BYTES:
                os.replace(path, path.with_name(path.name + ".1"))
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")


def spec_columns(spec: LineSpec) -> dict:
    """What a line stores from its spec: everything except the credentials."""
    return {"exp_date": spec.expires_at, "enabled": spec.enabled,
            "max_connections": spec.max_connections, "bouquets": list(spec.bouquets),
            "package": spec.package, "notes": spec.notes}


def _columns(spec: LineSpec) -> dict:
    """``spec_columns`` as the SQLite row stores them."""
    cols = spec_columns(spec)
    return {**cols, "enabled": int(spec.enabled), "bouquets": json.dumps(cols["bouquets"])}


def public(row: sqlite3.Row) -> dict:
    """A stored line without its salt and hash, values as the JSON state held them."""
    out = {key: row[key] for key in row.keys() if key not in ("salt", "password_hash")}
    out.update(id=str(row["id"]), enabled=bool(row["enabled"]), bouquets=json.loads(row["bouquets"]))
    return out


def line_from_state(row: sqlite3.Row, password: str) -> Line:
    from hmac import compare_digest

    known = compare_digest(row["password_hash"], password_hash(row["salt"], password))
    raw = public(row)
    return Line(
        line_id=raw["id"],
        username=row["username"],
        password=password if known else "",
        expires_at=row["exp_date"],
        enabled=raw["enabled"],
        max_connections=row["max_connections"],
        bouquets=tuple(sorted(set(raw["bouquets"]))),
        raw=raw,
    )


def iso_from_unix(unix_s: int) -> str | None:
    return iso(datetime.fromtimestamp(unix_s, UTC))
