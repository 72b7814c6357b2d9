"""Dry-run panel (``dry-run``): records what it would do and changes no real panel.

It simulates a panel well enough for the engine to converge: ``get`` after ``create`` finds the
line. Simulated lines live in ``<state_dir>/dry-run-<name>.json`` (rewritten atomically: temp
file, fsync, ``os.replace``) and every would-be write is appended to
``<state_dir>/dry-run-<name>.log``, one JSON object per line, for an operator to read. Reads
are not logged. Neither file holds a password: the state keeps a salted hash, enough for
``get`` to report whether the caller's password is the line's (a wrong one reads back as "").
With ``state_dir=None`` the lines live in memory only and nothing is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path

from iptvsync.clock import iso, now
from iptvsync.errors import PanelError
from iptvsync.fsutil import write_atomically
from iptvsync.panels.base import Capabilities, Line, LineSpec


def password_hash(salt: str, password: str) -> str:
    return hashlib.sha256(f"{salt}:{password}".encode()).hexdigest()


class DryRunPanel:
    """A simulated panel; the default for a fresh install."""

    kind = "dry-run"
    caps = Capabilities(real=False, needs_url=False)

    def __init__(self, name: str, state_dir: str | Path | None = None):
        self.name = name
        self._dir = Path(state_dir) if state_dir is not None else None
        self._memory: dict = {"next_id": 1, "lines": {}}
        self._lock = threading.Lock()  # one engine may run several syncs on one panel

    def __repr__(self) -> str:
        return f"DryRunPanel(name={self.name!r}, state_dir={str(self._dir) if self._dir else None!r})"

    @property
    def state_path(self) -> Path | None:
        return self._dir / f"dry-run-{self.name}.json" if self._dir else None

    @property
    def log_path(self) -> Path | None:
        return self._dir / f"dry-run-{self.name}.log" if self._dir else None

    def get(self, username: str, password: str, line_id: str | None = None) -> Line | None:
        with self._lock:
            row = self._load()["lines"].get(username)
        return None if row is None else line_from_state(row, password)

    def create(self, spec: LineSpec) -> Line:
        with self._lock:
            state = self._load()
            if spec.username in state["lines"]:
                raise PanelError(f"dry-run panel {self.name!r}: username already exists",
                                 ambiguous=True, status="EXISTS")
            salt = secrets.token_hex(8)
            state["lines"][spec.username] = {
                "id": str(state["next_id"]),
                "username": spec.username,
                "salt": salt,
                "password_hash": password_hash(salt, spec.password),
                **spec_columns(spec),
            }
            state["next_id"] += 1
            self._save(state, "create", spec)
        return self._must_get(spec.username, spec.password)

    def update(self, line: Line, spec: LineSpec) -> Line:
        with self._lock:
            state = self._load()
            row = state["lines"].get(line.username)
            if row is None:
                raise PanelError(f"dry-run panel {self.name!r}: the line is not on the panel",
                                 transient=True, status="NOT_FOUND")
            row.update(spec_columns(spec))
            self._save(state, "update", spec)
        return self._must_get(line.username, line.password)

    def health(self) -> dict:
        return {"ok": True}

    def _must_get(self, username: str, password: str) -> Line:
        line = self.get(username, password)
        assert line is not None  # written under the lock just before
        return line

    def _load(self) -> dict:
        path = self.state_path
        if path is None:
            return self._memory
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {"next_id": 1, "lines": {}}

    def _save(self, state: dict, call: str, spec: LineSpec | None, username: str = "") -> None:
        if self._dir is None:
            self._memory = state
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.state_path, json.dumps(state, indent=1, sort_keys=True))
        entry = {"at": iso(now()), "panel": self.name, "call": call,
                 "username": spec.username if spec else username}
        if spec is not None:
            entry.update(spec_columns(spec))
            entry["expires"] = iso_from_unix(spec.expires_at)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")


def spec_columns(spec: LineSpec) -> dict:
    """What a line stores from its spec: everything except the credentials."""
    return {"exp_date": spec.expires_at, "enabled": spec.enabled,
            "max_connections": spec.max_connections, "bouquets": list(spec.bouquets),
            "package": spec.package, "notes": spec.notes}


def line_from_state(row: dict, password: str) -> Line:
    known = hmac.compare_digest(row["password_hash"], password_hash(row["salt"], password))
    return Line(
        line_id=row["id"],
        username=row["username"],
        password=password if known else "",
        expires_at=row["exp_date"],
        enabled=row["enabled"],
        max_connections=row["max_connections"],
        bouquets=tuple(sorted(set(row["bouquets"]))),
        raw={key: value for key, value in row.items() if key not in ("salt", "password_hash")},
    )


def iso_from_unix(unix_s: int) -> str | None:
    return iso(datetime.fromtimestamp(unix_s, UTC))
