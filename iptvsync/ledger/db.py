"""The SQLite ledger: connection setup, transactions, migrations and the audit chain.

Everything iptvsync knows lives here. WAL + ``synchronous=FULL`` so a commit is on disk
before anyone is told "done"; the file is created 0600 because it holds buyer data.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..clock import iso, now
from ..errors import ConfigError, LedgerError
from .migrations import migrations

GENESIS = "0" * 64
log = logging.getLogger("iptvsync.ledger")


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return f"uid:{os.getuid()}"


class LedgerMissing(ConfigError):
    """No ledger at the configured path: only ``init`` creates one (a typo in ``[ledger] path``
    must not start a new, empty ledger that reports healthy)."""

    def __init__(self, path: Path):
        super().__init__(f"{path}: no ledger there: check [ledger] path in the config, or create one"
                         " with `iptvsync init`")


def require_ledger(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise LedgerMissing(path)
    return path


class Ledger:
    """One connection to the ledger file. Not shared between threads.

    ``create``: make the file when it is missing (``init`` and tests only); otherwise a missing
    ledger raises LedgerMissing.
    """

    def __init__(self, path: str | Path, *, migrate: bool = True, timeout_s: float = 10.0, create: bool = False):
        self.path = Path(path)
        if not create:
            require_ledger(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None,
                                        check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            # the first statements to read the file: "file is not a database" surfaces here
            self.conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self._enable_wal(timeout_s)
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{self.path}: cannot open ledger: {exc}") from None
        self._db = None
        self._lock = threading.RLock()
        self._depth = 0
        if migrate:
            self.migrate()

    def _enable_wal(self, timeout_s: float) -> None:
        """Switching a new file to WAL ignores busy_timeout: two processes opening a fresh ledger
        at once would see "database is locked". Wait for the other one instead."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @property
    def db(self):
        """A ``sqlite_utils.Database`` on this connection, imported on first use (migrations)."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # -- schema -------------------------------------------------------------------------
    def pending_migrations(self) -> list[str]:
        return migrations.pending_names(self.conn)

    def migrate(self) -> list[str]:
        """Apply pending migrations under the write lock (``BEGIN IMMEDIATE``): when two processes
        open an old ledger at once, the second waits, then finds nothing left to do. (Each
        migration runs in a savepoint, so none may be ``transactional=False``.)"""
        if not self.pending_migrations():
            return []
        if "inbox" in self.db.table_names():  # an existing ledger: keep a copy of it as it was
            first = self.pending_migrations()  # read again: another opener may have just migrated it
            if not first:
                return []
            self.backup_before_migrating(first[0])
        with self.tx():
            pending = self.pending_migrations()
            migrations.apply(self.db)
        return pending

    def backup_before_migrating(self, first_pending: str) -> Path:
        """A copy in ``backups/`` next to the ledger, made before an upgrade changes the schema.

        One per upgrade, named by its first migration: if the upgrade fails, cron's next run
        finds the copy and does not write another (a big ledger would otherwise fill the disk,
        one full copy a minute). Rotation (``backup --keep``) never touches it.
        """
        target = self.path.parent / "backups" / f"iptvsync-before-{first_pending}.db"
        if target.exists():
            log.warning("ledger schema upgrade: the copy from before it is %s", target)
            return target
        partial = target.with_name(target.name + ".partial")  # a killed copy is never taken for done
        partial.unlink(missing_ok=True)
        self.backup(partial)
        os.replace(partial, target)
        log.warning("ledger schema upgrade: backup written to %s", target)
        return target

    def close(self) -> None:
        self.conn.close()

    # -- transactions ---------------------------------------------------------------------
    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken up front, so two writers
        never deadlock half-way. Nested use joins the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past busy_timeout, read-only file…
                raise LedgerError(f"{self.path}: cannot write the ledger: {exc}") from None
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: dict | tuple = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params)]

    def one(self, sql: str, params: dict | tuple = ()) -> dict[str, Any] | None:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row else None

    # -- audit -----------------------------------------------------------------------------
    def audit(self, action: str, *, actor: str | None = None, subscription_id: int | None = None,
              sale_code: str | None = None, buyer_email: str | None = None, **detail: Any) -> None:
        """Append one audit row chained to the previous one by hash, in the caller's ``tx()`` if any.

        ``detail`` must never hold secrets: callers pass facts (days, status, panel), not
        credentials; values named like secrets are dropped as a last line of defence.
        Without an ``actor`` the row is the command line's: ``cli:<unix user>`` (the engine's
        rows say ``process``, the console's ``web:<login>``).
        """
        clean = {k: v for k, v in detail.items() if v is not None and not _secret_named(k)}
        with self.tx():  # joins the caller's transaction; alone, it still reads and appends atomically
            self._append_audit(action, actor, subscription_id, sale_code, buyer_email, clean)

    def _append_audit(self, action, actor, subscription_id, sale_code, buyer_email, clean) -> None:
        row = self.conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        record = {
            "at": iso(now()), "actor": actor or f"cli:{os_user()}", "action": action,
            "subscription_id": subscription_id, "sale_code": sale_code, "buyer_email": buyer_email,
            "detail": json.dumps(clean, sort_keys=True, default=str),
        }
        digest = audit_hash(prev, record)
        self.conn.execute(
            "INSERT INTO audit (at, actor, action, subscription_id, sale_code, buyer_email, detail,"
            " prev_hash, hash) VALUES (:at, :actor, :action, :subscription_id, :sale_code,"
            " :buyer_email, :detail, :prev_hash, :hash)",
            {**record, "prev_hash": prev, "hash": digest})

    def verify_audit(self, *, incremental: bool = False) -> tuple[int, int | None]:
        """(rows verified, id of the first broken row or None).

        ``incremental`` starts from the checkpoint the last good verification stored (after
        checking that its row still has the hash it had then) and reads only the rows added
        since; a full verification reads the chain from the genesis. Both store a new checkpoint
        when the chain is whole.
        """
        prev, count, after = GENESIS, 0, 0
        # a ledger not migrated yet (doctor opens it as it is) has no checkpoint table
        keeps = self.one("SELECT 1 AS x FROM sqlite_master WHERE name = 'audit_checkpoint'") is not None
        mark = None
        if incremental and keeps:
            mark = self.one("SELECT audit_id, hash, rows FROM audit_checkpoint WHERE id = 1")
        if mark is not None:
            # the row the checkpoint vouched for must still be there, whole, with the same hash
            row = self.conn.execute("SELECT * FROM audit WHERE id = ?", (mark["audit_id"],)).fetchone()
            if row is None or row["hash"] != mark["hash"] or audit_hash(row["prev_hash"], _record(row)) != row["hash"]:
                return max(0, mark["rows"] - 1), mark["audit_id"]
            prev, count, after = mark["hash"], mark["rows"], mark["audit_id"]
        last = None
        for row in self.conn.execute("SELECT * FROM audit WHERE id > ? ORDER BY id", (after,)):
            if row["prev_hash"] != prev or audit_hash(prev, _record(row)) != row["hash"]:
                return count, row["id"]
            prev = row["hash"]
            count += 1
            last = row["id"]
        if last is not None and keeps:
            with self.tx() as conn:
                conn.execute("INSERT INTO audit_checkpoint (id, audit_id, hash, rows, verified_at)"
                             " VALUES (1, :id, :hash, :rows, :at) ON CONFLICT (id) DO UPDATE SET"
                             " audit_id = excluded.audit_id, hash = excluded.hash, rows = excluded.rows,"
                             " verified_at = excluded.verified_at",
                             {"id": last, "hash": prev, "rows": count, "at": iso(now())})
        return count, None

    def backup(self, target: str | Path) -> Path:
        """Online, consistent copy (SQLite backup API), created 0600."""
        target = Path(target)
        if target.exists():
            raise LedgerError(f"{target}: already exists")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise LedgerError(f"{target}: cannot create backup: {exc.strerror or exc}") from None
        try:
            dest = sqlite3.connect(target)
            try:
                self.conn.backup(dest)
            finally:
                dest.close()
        except sqlite3.Error as exc:
            target.unlink(missing_ok=True)  # no half-written copy that looks like a backup
            raise LedgerError(f"{target}: backup failed: {exc}") from None
        return target


def _record(row) -> dict[str, Any]:
    return {k: row[k] for k in ("at", "actor", "action", "subscription_id", "sale_code", "buyer_email", "detail")}


@lru_cache(maxsize=512)
def _secret_named(key: str) -> bool:
    """An audit detail named like a secret (dropped): asked for every key of every audit row."""
    return any(s in key.lower() for s in ("password", "api_key", "chave"))


def audit_hash(prev: str, record: dict[str, Any]) -> str:
    payload = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    from hashlib import sha256  # on the first hash: status, subs show and logs never hash (~3 ms of a start)

    return sha256((prev + payload).encode()).hexdigest()
