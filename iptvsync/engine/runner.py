"""One ``process`` run: apply → sweep → sync → mail, under an exclusive lock.

The lock is an ``flock`` on a file next to the ledger: the kernel releases it when the
process dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path

from ..clock import iso, now
from ..config import Config
from ..ledger.db import Ledger
from ..ledger.queue import MailStatus, SyncStatus
from ..ledger.retention import prune
from ..panels.registry import build_panel
from .apply import apply_inbox
from .mail_stage import send_outbox
from .sweep import sweep
from .sync import sync_panels

log = logging.getLogger("iptvsync.process")


class AlreadyRunning(Exception):
    """Another ``process`` holds the lock."""


@contextlib.contextmanager
def process_lock(ledger_path: Path):
    path = Path(str(ledger_path) + ".process.lock")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another `iptvsync process` is running (lock {path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def build_panels(cfg: Config) -> dict:
    state_dir = cfg.ledger_path.parent
    return {name: build_panel(name, p.kind, p.url, cfg.secrets.panel_api_keys.get(name, ""), p.timeout_s,
                              state_dir=state_dir, max_concurrency=p.max_concurrency)
            for name, p in cfg.panels.items()}


def run_process(cfg: Config, *, limit: int | None = None, panels: dict | None = None,
                mail_backend=None) -> dict:
    """Run every stage once (apply, sweep, sync, mail); returns the summary. Raises AlreadyRunning."""
    with process_lock(cfg.ledger_path):
        ledger = Ledger(cfg.ledger_path)
        try:
            started = now()
            summary: dict = {"started_at": iso(started)}
            summary["apply"] = apply_inbox(ledger, cfg, now(), limit)
            summary["sweep"] = sweep(ledger, cfg, now())
            result = sync_panels(cfg.ledger_path, cfg, panels or build_panels(cfg), now(), limit)
            summary["sync"] = {k: v for k, v in asdict(result).items() if k != "calls"}
            summary["mail"] = send_outbox(ledger, cfg, now(), limit, backend=mail_backend)
            summary["finished_at"] = iso(now())
            with ledger.tx() as conn:
                conn.execute("INSERT INTO runs (started_at, finished_at, summary) VALUES (?, ?, ?)",
                             (summary["started_at"], summary["finished_at"], json.dumps(summary)))
                prune(conn, now())
            return summary
        finally:
            ledger.close()


def process_loop(cfg: Config, *, every_s: float, stop: threading.Event) -> None:
    """``serve --process-every``: run ``process`` in-process until ``stop`` is set."""
    while not stop.wait(every_s):
        try:
            summary = run_process(cfg)
            if any(summary["apply"].values()) or summary["sync"][SyncStatus.SYNCED] or summary["mail"][MailStatus.SENT]:
                log.info("process: %s", json.dumps({k: summary[k] for k in ("apply", "sync", "mail", "sweep")}))
        except AlreadyRunning as exc:
            log.info("%s; skipping this round", exc)
        except Exception:
            log.exception("process run failed; will try again in %ss", every_s)
