"""What the admin console needs from ``ops`` besides the actions themselves: its ledger."""

from __future__ import annotations

from ..config import Config
from ..ledger.db import Ledger
from ..ledger.queue import InboxStatus, MailStatus, SyncStatus

#: the queue statuses, for the console's filters and labels (spelled in ``ledger/queue.py`` only)
STATUSES = (InboxStatus, SyncStatus, MailStatus)
INBOX_STATUSES = tuple(InboxStatus)
HELD = InboxStatus.HELD


def open_ledger(cfg: Config, *, migrate: bool = False) -> Ledger:
    """One connection for one request (a ``Ledger`` is not shared between threads)."""
    return Ledger(cfg.ledger_path, migrate=migrate)


def verify_chain(ledger: Ledger) -> tuple[int, int | None]:
    """The audit chain checked from its last checkpoint (rows verified, first broken id)."""
    return ledger.verify_audit(incremental=True)
