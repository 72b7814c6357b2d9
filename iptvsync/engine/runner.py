"""One ``process`` run under an exclusive lock: fresh payments first, then the bulk work.

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
import time
from dataclasses import asdict
from pathlib import Path

from ..clock import epoch, iso, now
from ..config import Config
from ..errors import IptvsyncError
from ..ledger.db import Ledger, require_ledger
from ..ledger.inbox import compress_settled
from ..ledger.lock import LedgerBusy, hold_shared
from ..ledger.queue import INBOX, SYNC, MailStatus, SyncStatus, due
from ..ledger.retention import prune
from ..panels.registry import build_panel
from .apply import apply_inbox
from .mail_stage import make_backend, send_outbox
from .sweep import sweep
from .sync import Budget, sync_panels
from .whatsapp_stage import send_whatsapp

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


#: Panel calls of bulk work per run: lines that no payment of this run touched (expiries,
#: repairs queued by ``reconcile panel --fix``, retries). The rest waits for the next run.
BULK_CALLS = 2000
#: Emails of bulk work (expiry notices, reminders, retries) per run; fresh ones are not counted.
BULK_MAILS = 500
#: Seconds of bulk WhatsApp sending per run, their pacing included; the rest in the next run
#: (``serve`` runs again after ``BULK_PAUSE_S``; cron a minute later)
WHATSAPP_BULK_S = 20.0
#: Settled bodies compressed per run, and per transaction (the receiver waits at most for one).
COMPRESS_PER_RUN = 5000
COMPRESS_BATCH = 250
#: Expiries the sweep takes per run (earliest first); the rest next run.
SWEEP_LIMIT = 2000
#: How many times one run goes back to serve new payments in the middle of its bulk work.
MAX_ROUNDS = 100


def run_process(cfg: Config, *, limit: int | None = None, panels: dict | None = None,
                mail_backend=None, bulk_calls: int = BULK_CALLS, sweep_limit: int | None = SWEEP_LIMIT,
                halt: threading.Event | None = None) -> dict:
    """Run every stage once, fresh payments first; returns the summary. Raises AlreadyRunning.

    Order: apply the inbox, then sync and mail the subscriptions that apply just touched (a
    buyer who just paid waits for nothing else); then the bulk work: the sweep, the other due
    lines within ``bulk_calls`` panel calls, the rest of the outbox, compressing settled
    bodies. Each bulk step gives way as soon as a new postback is waiting (between two lines,
    two emails, two batches): the run serves it first, then goes on.
    """
    require_ledger(cfg.ledger_path)  # before its lock files: a typo in [ledger] path names the path
    with process_lock(cfg.ledger_path), _in_use(cfg.ledger_path):
        ledger = Ledger(cfg.ledger_path)
        summary: dict = {"started_at": iso(now()), "apply": {}, "sync": {}, "mail": {}, "whatsapp": {},
                         "bulk": {"preempted": 0}, "errors": []}
        failures = Failures(cfg)
        logging.getLogger("iptvsync").addHandler(failures)
        try:
            # [email] is checked by every run (no network), not first when a buyer's email is due
            mail_backend = mail_backend or make_backend(cfg)
            _stages(ledger, cfg, summary, limit, panels, mail_backend, bulk_calls, sweep_limit, halt)
        except BaseException as exc:  # a run that dies (a config error, SIGINT) is recorded as failed
            failures.messages.append(f"{type(exc).__name__}: {exc}"[:300])
            raise
        finally:
            logging.getLogger("iptvsync").removeHandler(failures)
            summary["errors"] = failures.messages
            try:
                _record_run(ledger, summary)
            except Exception as exc:  # the ledger itself fails (disk full): the exit code still says it
                log.error("could not record the run: %s: %s", type(exc).__name__, exc)
            finally:
                ledger.close()
        return summary


class Failures(logging.Handler):
    """Every error a run logs, a traceback above all, makes the run a failure: ``process`` exits
    1 and ``status`` is unhealthy with the first of them (secrets blanked) until a run succeeds.
    The receiver's own log lines (``serve --process-every`` shares the process) are not the run's."""

    def __init__(self, cfg: Config):
        from ..logsafe import RedactSecrets

        super().__init__(logging.ERROR)
        s = cfg.secrets
        self.redact = RedactSecrets({s.chave_unica, s.consumer_key, s.smtp_password, *s.panel_api_keys.values(),
                                     *cfg.keyring, s.whatsapp_token, s.whatsapp_client_token})
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("iptvsync.receiver") or len(self.messages) >= 20:
            return
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text += f" ({type(exc).__name__}: {exc})"
        self.messages.append(self.redact.scrub(text)[:300])


def _record_run(ledger: Ledger, summary: dict) -> None:
    summary["finished_at"] = iso(now())
    error = "; ".join(summary["errors"])[:1000] or None
    with ledger.tx() as conn:
        conn.execute("INSERT INTO runs (started_at, finished_at, summary, error) VALUES (?, ?, ?, ?)",
                     (summary["started_at"], summary["finished_at"], json.dumps(summary, default=str), error))
        prune(conn, now())


@contextlib.contextmanager
def _in_use(ledger_path: Path):
    """The ledger's shared lock: `restore` and `rekey` wait for no run; a run during them is skipped."""
    try:
        fd = hold_shared(ledger_path)
    except LedgerBusy as exc:
        raise AlreadyRunning(str(exc)) from None
    try:
        yield
    finally:
        os.close(fd)


def _stages(ledger: Ledger, cfg: Config, summary: dict, limit, panels, mail_backend, bulk_calls,
            sweep_limit, halt: threading.Event | None) -> None:
    panels = panels or build_panels(cfg)
    run = {"fresh": set(), "breakers": {}, "rounds": 0}  # what one run carries from round to round
    serve_fresh(ledger, cfg, panels, limit, mail_backend, summary, run)
    # a postback stored after the last apply of this run (not one that ``limit`` left)
    waiting = lambda: run["rounds"] < MAX_ROUNDS and postback_waiting(ledger, cfg, after=run["seen"])  # noqa: E731

    def give_way() -> None:
        """Serve a postback that came in meanwhile, before the next bulk step."""
        if waiting():
            run["rounds"] += 1
            summary["bulk"]["preempted"] += 1
            serve_fresh(ledger, cfg, panels, limit, mail_backend, summary, run)

    summary["sweep"] = sweep(ledger, cfg, now(), sweep_limit, preempt=waiting)
    give_way()
    budget = Budget(bulk_calls, preempt=waiting)
    while True:
        result = sync_panels(cfg.ledger_path, cfg, panels, now(), limit, budget=budget,
                             skip=run["fresh"], breakers=run["breakers"])
        _add(summary["sync"], _sync_counts(result))
        if not budget.preempted:
            break
        budget.preempted = False
        give_way()
    mails = min(limit or BULK_MAILS, BULK_MAILS)
    while True:
        rest = send_outbox(ledger, cfg, now(), mails, backend=mail_backend, stop=waiting)
        _add(summary["mail"], rest)
        summary["mail"]["waiting"] = rest["waiting"]  # those of the earlier rounds are in it again
        mails -= rest[MailStatus.SENT] + rest[MailStatus.SKIPPED] + rest[MailStatus.FAILED]
        if mails <= 0 or not waiting():
            break
        give_way()
    if not summary["whatsapp"].get("halted"):  # after every email: a gateway down delays none
        _add(summary["whatsapp"], send_whatsapp(ledger, cfg, now(), min(limit or BULK_MAILS, BULK_MAILS),
                                                stop=lambda: waiting() or bool(halt and halt.is_set()),
                                                budget_s=WHATSAPP_BULK_S))
    summary["compressed"] = 0
    while summary["compressed"] < COMPRESS_PER_RUN:
        give_way()
        done = compress_settled(ledger, limit=COMPRESS_BATCH)
        summary["compressed"] += done
        if done < COMPRESS_BATCH:
            break
    give_way()
    # what the next run has to do: lines still due, expiries the sweep had no room for
    summary["bulk"]["deferred"] = ledger.conn.execute(
        f"SELECT COUNT(*) FROM subscriptions WHERE {due(SYNC)}",
        {"now": iso(now()), "max_attempts": cfg.policy.max_attempts}).fetchone()[0]
    summary["bulk"]["more_expiries"] = ledger.conn.execute(
        "SELECT 1 FROM subscriptions WHERE desired_enabled = 1 AND desired_expires_at <= ? LIMIT 1",
        (epoch(now()),)).fetchone() is not None


def serve_fresh(ledger: Ledger, cfg: Config, panels: dict, limit: int | None, mail_backend, summary: dict,
                run: dict) -> None:
    """Apply the inbox, then sync and mail only the subscriptions it touched (each subscription
    is tried once per run: the bulk rounds skip the ones served here)."""
    mark = ledger.one("SELECT COALESCE(MAX(id), 0) AS id FROM audit")["id"]
    run["seen"] = ledger.one("SELECT COALESCE(MAX(id), 0) AS id FROM inbox")["id"]
    _add(summary["apply"], apply_inbox(ledger, cfg, now(), limit))
    # NOT INDEXED: the rows after the mark by rowid, never a walk of the audit_sub index
    touched = ledger.query("SELECT subscription_id FROM audit NOT INDEXED WHERE id > :mark"
                           " AND subscription_id IS NOT NULL", {"mark": mark})
    fresh = list(dict.fromkeys(row["subscription_id"] for row in touched if row["subscription_id"] not in run["fresh"]))
    run["fresh"].update(fresh)
    if fresh:
        _add(summary["sync"], _sync_counts(sync_panels(cfg.ledger_path, cfg, panels, now(), limit, only=fresh,
                                                       breakers=run["breakers"])))
    _add(summary["mail"], send_outbox(ledger, cfg, now(), limit, backend=mail_backend, only=fresh))
    if not summary["whatsapp"].get("halted"):
        _add(summary["whatsapp"], send_whatsapp(ledger, cfg, now(), limit, only=fresh))


def postback_waiting(ledger: Ledger, cfg: Config, after: int = 0) -> bool:
    """Is a postback waiting to be applied? (The bulk sync's threads ask through ``Budget.take``,
    which holds its lock: one at a time.)"""
    return ledger.conn.execute(f"SELECT 1 FROM inbox WHERE {due(INBOX)} AND id > :after LIMIT 1",
                               {"now": iso(now()), "max_attempts": cfg.policy.max_attempts,
                                "after": after}).fetchone() is not None


def _sync_counts(result) -> dict:
    return {k: v for k, v in asdict(result).items() if k not in ("calls", "deferred")}


def _add(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


#: ``serve --process-on-postback``: how often the ledger is asked whether a postback came in,
#: and how long to wait after one for the rest of a burst before running.
WATCH_EVERY_S = 0.05
DEBOUNCE_S = 0.05
#: Between two runs of an unfinished bulk of work (an expiry wave) when serve runs ``process``.
BULK_PAUSE_S = 1.0


def process_loop(cfg: Config, *, every_s: float, stop: threading.Event, on_postback: bool = False) -> None:
    """``serve``: run ``process`` in-process every ``every_s`` seconds (0: never by the clock)
    and, with ``on_postback``, as soon as a postback is committed (debounced). Each run takes
    the same lock as cron's; a run that finds it taken tries again shortly, while the run
    holding it sees the new postback and serves it before its bulk work."""
    watcher = Ledger(cfg.ledger_path) if on_postback else None
    next_tick = time.monotonic() + every_s if every_s > 0 else float("inf")
    try:
        while not stop.is_set():
            due_now = time.monotonic() >= next_tick
            if not due_now:
                if watcher is None or not postback_waiting(watcher, cfg):
                    stop.wait(min(WATCH_EVERY_S if watcher else every_s, max(0.0, next_tick - time.monotonic())))
                    continue
                stop.wait(DEBOUNCE_S)  # a burst is served by one run
            if stop.is_set():
                break
            next_tick = time.monotonic() + every_s if every_s > 0 else float("inf")
            summary = _run_logged(cfg, every_s, stop)
            if summary and (summary["bulk"]["deferred"] or summary["bulk"]["more_expiries"]
                            or summary["whatsapp"].get("more")):
                next_tick = min(next_tick, time.monotonic() + BULK_PAUSE_S)  # an expiry wave: go on soon
    finally:
        if watcher is not None:
            watcher.close()


def _run_logged(cfg: Config, every_s: float, stop: threading.Event | None = None) -> dict | None:
    try:
        summary = run_process(cfg, halt=stop)  # serve stopping: no more paced bulk WhatsApp sends
        if summary["errors"]:
            log.error("process run failed (%d error(s)): %s", len(summary["errors"]), summary["errors"][0])
        if any(summary["apply"].values()) or summary["sync"][SyncStatus.SYNCED] or summary["mail"][MailStatus.SENT]:
            log.info("process: %s", json.dumps({k: summary[k] for k in ("apply", "sync", "mail", "sweep")}))
        return summary
    except AlreadyRunning as exc:
        log.info("%s; skipping this round", exc)
        time.sleep(WATCH_EVERY_S * 4)
    except IptvsyncError as exc:  # a config error says what to fix in one line: no traceback
        log.error("process run failed: %s; will try again in %ss", exc, every_s)
    except Exception:
        log.exception("process run failed; will try again in %ss", every_s)
