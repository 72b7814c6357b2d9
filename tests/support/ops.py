"""Running the installed ``iptvsync`` command against a test install, and what it left behind."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

IPTVSYNC = str(Path(sys.executable).parent / "iptvsync")


def cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([IPTVSYNC, "--config", str(config), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=config.parent)


def panel_calls(folder: Path) -> list[str]:
    """The dry-run panel's would-be writes, in order."""
    log = folder / "dry-run-main.log"
    return [json.loads(line)["call"] for line in log.read_text().splitlines()] if log.exists() else []


def facts(folder: Path) -> dict:
    """Subscriptions, emails and applied migrations of the install's ledger."""
    conn = sqlite3.connect(folder / "iptvsync.db")
    try:
        return {"subs": conn.execute("SELECT key, paid_until, sync_status FROM subscriptions ORDER BY id").fetchall(),
                "sent": conn.execute("SELECT kind, cycle, status FROM outbox ORDER BY id").fetchall(),
                "migrations": [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY name")]}
    finally:
        conn.close()
