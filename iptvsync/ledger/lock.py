"""Who may replace or rewrite the ledger file while others write into it: one flock beside it.

Whatever writes into the ledger holds a *shared* lock on ``<ledger>.in-use``: the receiver's
writer process for as long as it runs, each ``process`` run, and every other command that writes
(``subs grant``, ``inbox retry``, ``reconcile … --fix``…: ``cli/app.writes``) until it returns. What replaces the
file or rewrites it wholesale (``restore``, ``rekey``) takes the lock *exclusive*, without
waiting, and refuses while anyone holds it: a receiver that kept committing into a file that
``restore`` had replaced would answer 200 for postbacks that are then in no ledger at all.

An ``flock`` is released by the kernel when its holder dies, even by SIGKILL, so a crash never
leaves the ledger locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import IptvsyncError, LedgerError

SUFFIX = ".in-use"
#: How to stop every holder of an install set up by ``iptvsync deploy systemd``.
STOP_HINT = "sudo systemctl stop 'iptvsync-*', or Ctrl-C a `serve` you started"
#: What a writer is told while ``restore`` or ``rekey`` holds the ledger (one line, exit 1).
BUSY = "a restore or rekey is running on this ledger; try again when it ends"


class LedgerInUse(IptvsyncError):
    """A receiver or a ``process`` run holds the ledger: it cannot be replaced now."""


class LedgerBusy(IptvsyncError):
    """``restore`` or ``rekey`` holds the ledger: nothing may write into it until they finish."""


def lock_path(ledger_path: str | Path) -> Path:
    return Path(str(ledger_path) + SUFFIX)


def _open(ledger_path: str | Path) -> int:
    try:
        return os.open(lock_path(ledger_path), os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise LedgerError(f"{lock_path(ledger_path)}: cannot open the ledger's lock: {exc.strerror or exc}") from None


def hold_shared(ledger_path: str | Path) -> int:
    """Take the shared lock and return its descriptor (closing it releases the lock); raises
    LedgerBusy while a restore or rekey runs."""
    fd = _open(ledger_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LedgerBusy(BUSY) from None
    return fd


@contextlib.contextmanager
def shared(ledger_path: str | Path) -> Iterator[None]:
    fd = hold_shared(ledger_path)
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(ledger_path: str | Path, command: str) -> Iterator[None]:
    """Hold the ledger alone for ``command`` (``restore``, ``rekey``); LedgerInUse, at once, when
    a receiver or ``process`` holds it."""
    fd = _open(ledger_path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerInUse(f"{ledger_path} is in use by a running receiver, `process`, restore or rekey:"
                              f" stop them first ({STOP_HINT}), then run `iptvsync {command}` again") from None
        yield
    finally:
        os.close(fd)


def identity(ledger_path: str | Path) -> tuple[int, int]:
    st = os.stat(ledger_path)
    return st.st_dev, st.st_ino


def replaced(ledger_path: str | Path, opened: tuple[int, int]) -> str | None:
    """Why the file at ``ledger_path`` is no longer the one opened as ``opened`` (a copy moved over
    it by hand, behind the receiver's back), or None. A row committed into a replaced file is in
    no ledger anyone reads: the receiver's writer asks before acknowledging anything."""
    try:
        now = identity(ledger_path)
    except OSError as exc:
        return f"the ledger file {ledger_path} is gone ({exc.strerror}): restart the receiver"
    if now != opened:
        return f"the ledger file {ledger_path} was replaced while the receiver ran: restart the receiver"
    return None
