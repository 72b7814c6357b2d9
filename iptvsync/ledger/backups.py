"""Backups of the ledger: dated copies in a folder, rotation, and restore.

A dated backup is ``iptvsync-YYYYMMDD-HHMMSS.db`` (UTC), so a plain sort is a time sort and
rotation never touches a file it did not name. Restore checks the copy first, keeps the
current ledger aside, and swaps the file in with one ``os.replace``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

from ..clock import now
from ..errors import LedgerError

DATED = re.compile(r"^iptvsync-(\d{8}-\d{6})(?:-(\d+))?\.db$")


def dated_name(tag: str = "") -> str:
    return f"iptvsync-{now().strftime('%Y%m%d-%H%M%S')}{tag}.db"


def dated_backups(folder: Path) -> list[Path]:
    """The dated backups in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(m.group(1), int(m.group(2) or 0), p) for p in folder.iterdir() if (m := DATED.match(p.name))]
    return [p for *_, p in sorted(found)]


def backup_into(ledger, folder: Path, keep: int | None = None) -> tuple[Path, list[Path]]:
    """A new dated backup in ``folder``; with ``keep``, the oldest beyond ``keep`` are deleted.
    Returns (the new file, the deleted ones)."""
    if keep is not None and keep < 1:
        raise LedgerError("--keep must be at least 1")
    target = folder / dated_name()
    n = 1
    while target.exists():  # two backups in the same second
        target = folder / dated_name(f"-{n}")
        n += 1
    ledger.backup(target)
    pruned = []
    if keep is not None:
        for old in dated_backups(folder)[:-keep]:
            old.unlink(missing_ok=True)
            pruned.append(old)
    return target, pruned


def check_copy(path: Path) -> int:
    """The number of stored postbacks in an iptvsync ledger copy; LedgerError if it is not one."""
    if not path.is_file():
        raise LedgerError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if ok != "ok":
                raise LedgerError(f"{path}: integrity check failed: {ok}")
            if "inbox" not in tables:
                raise LedgerError(f"{path}: not an iptvsync ledger (no inbox table)")
            return conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: not a readable SQLite database: {exc}") from None


def restore(copy: Path, ledger_path: Path) -> Path | None:
    """Put ``copy`` in place of the ledger. The current ledger (if any) is first kept next to it
    as ``<name>.before-restore-<stamp>`` (returned). Run under the ledger's exclusive lock."""
    check_copy(copy)
    aside = _keep_aside(ledger_path) if ledger_path.exists() else None
    tmp = ledger_path.with_name(f".{ledger_path.name}.restoring")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with open(copy, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        # they belong to the file being replaced (kept aside above): left there, SQLite would
        # replay the old -wal's pages into the restored file
        for suffix in ("-wal", "-shm"):
            Path(str(ledger_path) + suffix).unlink(missing_ok=True)
        os.replace(tmp, ledger_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LedgerError(f"{ledger_path}: cannot restore: {exc.strerror or exc}") from None
    return aside


def _keep_aside(ledger_path: Path) -> Path:
    """A copy of the current ledger, what its -wal holds included. One SQLite backup when the file
    opens; when it does not (a damaged ledger, the usual reason to restore), its bytes as they
    are: the main file and its -wal, side by side, as SQLite would open them."""
    aside = ledger_path.with_name(f"{ledger_path.name}.before-restore-{now().strftime('%Y%m%d-%H%M%S')}")
    wal = Path(str(ledger_path) + "-wal")
    try:
        os.close(os.open(aside, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise LedgerError(f"{ledger_path}: cannot keep the current ledger aside: {exc.strerror or exc}") from None
    try:
        try:
            # read-only: closing it checkpoints nothing into the file (a damaged one stays as it is)
            current = sqlite3.connect(f"{ledger_path.absolute().as_uri()}?mode=ro", uri=True)
            try:
                dest = sqlite3.connect(aside)
                try:
                    current.backup(dest)  # includes what is still in the -wal
                finally:
                    dest.close()
            finally:
                current.close()
        except sqlite3.Error:
            for source, target in ((ledger_path, aside), (wal, Path(str(aside) + "-wal"))):
                if source.exists():
                    _copy_bytes(source, target)
    except (OSError, sqlite3.Error) as exc:
        for leftover in (aside, Path(str(aside) + "-wal")):
            leftover.unlink(missing_ok=True)
        raise LedgerError(f"{ledger_path}: cannot keep the current ledger aside: {exc}") from None
    return aside


def _copy_bytes(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
