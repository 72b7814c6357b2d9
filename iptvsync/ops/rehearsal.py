"""The go-live rehearsal: one marked test purchase through the whole live chain, then its line
disabled again.

``simulate purchase --live`` posts the purchase to the live receiver (sale code ``SIM…``, buyer
"Ensaio iptvsync (teste)", the operator's address as the buyer's). This module follows it:
the receiver stored it, ``process`` created the line on the real panel and the activation
email went out through the real backend; then the subscription is put on an operator hold
(audited as the rehearsal) and the line is disabled on the panel. iptvsync never deletes
lines: the report says which one to remove in the panel, if wanted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import human
from ..config import Config
from ..engine.runner import AlreadyRunning, run_process
from ..errors import IptvsyncError
from ..ledger.db import Ledger
from ..ledger.queue import MailStatus, SyncStatus
from ..ops.subs import set_hold

REHEARSAL_NAME = "Ensaio iptvsync (teste)"
POLL_S = 0.5


class RehearsalTimeout(IptvsyncError):
    pass


@dataclass
class Stage:
    sub: dict | None
    email: dict | None


def _stage(cfg: Config, sale: str) -> Stage:
    ledger = Ledger(cfg.ledger_path)
    try:
        sub = ledger.one("SELECT s.* FROM subscriptions s JOIN charges c ON c.subscription_id = s.id"
                         " WHERE c.sale_code = :sale", {"sale": sale})
        email = None if sub is None else ledger.one(
            "SELECT * FROM outbox WHERE subscription_id = :id AND kind = 'activation' AND channel = 'email'",
            {"id": sub["id"]})
        return Stage(sub, email)
    finally:
        ledger.close()


def _drive(cfg: Config) -> None:
    """Run ``process`` now unless the timer (or cron) is running it."""
    try:
        run_process(cfg)
    except AlreadyRunning:
        pass


def _wait(cfg: Config, sale: str, done: Callable[[Stage], bool], what: str, timeout_s: float) -> Stage:
    deadline = time.monotonic() + timeout_s
    while True:
        _drive(cfg)
        stage = _stage(cfg, sale)
        if done(stage):
            return stage
        if stage.sub and stage.sub["sync_status"] == SyncStatus.DEAD:
            raise IptvsyncError(f"rehearsal: the panel refused the line: {stage.sub['last_error']}")
        if stage.email and stage.email["status"] in (MailStatus.DEAD, MailStatus.FAILED):
            raise IptvsyncError(f"rehearsal: the activation email failed: {stage.email['last_error']}")
        if time.monotonic() > deadline:
            last = stage.sub["last_error"] if stage.sub and stage.sub["last_error"] else None
            raise RehearsalTimeout(f"rehearsal: no {what} after {timeout_s:.0f}s"
                                   + (f" (panel: {last})" if last else "")
                                   + f"; see `iptvsync status` and `iptvsync logs --sale {sale}`")
        time.sleep(POLL_S)


def follow(cfg: Config, sale: str, *, timeout_s: float = 300) -> list[str]:
    """Wait for the line and the email, disable the line, wait for the panel; what happened."""
    stage = _wait(cfg, sale, lambda s: bool(s.sub and s.sub["sync_status"] == SyncStatus.SYNCED
                                           and s.sub["applied_enabled"] and s.email
                                           and s.email["status"] == MailStatus.SENT),
                  "line and activation email", timeout_s)
    sub, panel = stage.sub, cfg.panels[stage.sub["panel"]]
    said = [f"line {sub['username']} created on panel {panel.name} ({panel.kind}), enabled until "
            f"{human(sub['paid_until'])}",
            f"activation email sent to {stage.email['to_addr']} ({stage.email['message_id']})"]
    ledger = Ledger(cfg.ledger_path)
    try:
        set_hold(ledger, cfg, str(sub["id"]), "suspended")
        ledger.audit("rehearsal.finished", subscription_id=sub["id"], sale_code=sale, buyer_email=sub["buyer_email"])
    finally:
        ledger.close()
    _wait(cfg, sale, lambda s: bool(s.sub and s.sub["sync_status"] == SyncStatus.SYNCED
                                    and not s.sub["applied_enabled"]), "disabled line", timeout_s)
    said.append(f"line {sub['username']} disabled on the panel (subscription {sub['id']} on hold); iptvsync "
                "never deletes lines: remove it in the panel if you want it gone")
    return said
