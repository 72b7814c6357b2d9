"""``process --dry-run``: run the real stages on a throw-away copy of the ledger, with panels
that answer reads for real but only record writes. Nothing outside the copy changes."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..clock import human, now
from ..config import Config
from ..ledger.db import Ledger
from ..ledger.outbox import EMAIL, WHATSAPP
from ..ledger.queue import InboxStatus, MailStatus
from ..panels.base import Line, LineSpec
from .apply import apply_inbox
from .runner import build_panels
from .sweep import sweep
from .sync import sync_panels


class RecordingPanel:
    """Reads go to the real panel; writes are recorded and answered as if they worked."""

    def __init__(self, real, calls: list):
        self.real, self.calls = real, calls
        # The real adapter's capabilities: a reseller's update is reported as a real run makes it.
        self.name, self.kind, self.caps = real.name, real.kind, real.caps

    def get(self, username, password, line_id=None):
        return self.real.get(username, password, line_id)

    def _line(self, spec: LineSpec, line_id=None) -> Line:
        return Line(line_id=line_id, username=spec.username, password=spec.password, expires_at=spec.expires_at,
                    enabled=spec.enabled, max_connections=spec.max_connections, bouquets=spec.bouquets)

    def create(self, spec):
        self.calls.append({"subscription": spec.notes.removeprefix("iptvsync "), "panel": self.name,
                           "call": "create", "why": f"new line {spec.username}, enabled={spec.enabled},"
                           f" expires {human(spec.expires_at)}"})
        return self._line(spec)

    def update(self, line, spec):
        self.calls.append({"subscription": spec.notes.removeprefix("iptvsync "), "panel": self.name,
                           "call": "update", "why": f"enabled {line.enabled}->{spec.enabled}, "
                           f"expires {human(line.expires_at) or 'never'} -> {human(spec.expires_at)}"})
        return replace(self._line(spec, line.line_id), username=line.username, password=line.password)

    def shortfall_slack_s(self, spec):  # package panels: as the real adapter decides
        return self.real.shortfall_slack_s(spec)

    def health(self):
        return self.real.health()


def plan_process(cfg: Config, limit: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="iptvsync-plan-") as tmp:
        copy = Path(tmp) / "plan.db"
        source = Ledger(cfg.ledger_path)
        source.backup(copy)
        source.close()
        ledger = Ledger(copy)
        applied = apply_inbox(ledger, cfg, now(), limit)
        sweep(ledger, cfg, now())
        calls: list = []
        panels = {name: RecordingPanel(p, calls) for name, p in build_panels(cfg).items()}
        result = sync_panels(copy, cfg, panels, now(), limit)
        pending = dict(ledger.conn.execute("SELECT channel, COUNT(*) FROM outbox WHERE status = ? GROUP BY channel",
                                           (MailStatus.PENDING,)).fetchall())
        ledger.close()
    # "emails" counts the email channel only, as it did before WhatsApp; "messages" every channel
    return {"apply": applied[InboxStatus.APPLIED], "calls": calls, "emails": pending.get(EMAIL, 0),
            "whatsapp": pending.get(WHATSAPP, 0), "messages": sum(pending.values()),
            "sync_failures": result.failed}
