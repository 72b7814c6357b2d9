"""Stage 3 of ``process``: make each panel match the ledger, then read it back.

Per subscription: credentials are stored (encrypted) before the first call; ``get`` comes
before ``create``; every write is verified by reading the line back; only absolute values are
written, so re-running after a crash converges instead of adding twice. Subscriptions of one
panel run concurrently up to its ``max_concurrency``; one subscription's calls stay in order.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from ..clock import epoch, human, iso, parse_iso
from ..config import Config
from ..errors import IptvsyncError, PanelError
from ..ledger.db import Ledger
from ..ledger.queue import SYNC, SyncStatus, due, fail
from ..panels.base import Line, LineSpec, Panel
from ..panels.breaker import Breaker

log = logging.getLogger("iptvsync.sync")

EXPIRY_TOLERANCE_S = 120  # panels store seconds or 'Y-m-d H:i:s' in their own zone
RESELLER_SLACK_S = 86400  # a package extends from "now" or from expiry: close enough is a day


@dataclass
class SyncResult:
    synced: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    deferred: int = 0  # left for a later run: past the bulk budget, or fresher work came in
    calls: list = field(default_factory=list)


def spec_for(sub: dict, cfg: Config, username: str, password: str, now: datetime) -> LineSpec:
    product = cfg.products.get(sub["product_code"])
    plan = product.plans.get(sub["plan_code"] or "") if product else None
    expires_at = sub["desired_expires_at"] or int(now.timestamp())
    panel = cfg.panels.get(sub["panel"])
    if panel and panel.caps.extends_by_package and sub["paid_until"]:
        # A package buys whole periods: aim at paid_until, not at paid_until + grace, or the
        # grace days alone would look "short" and buy another package.
        expires_at = epoch(parse_iso(sub["paid_until"]))
    return LineSpec(
        username=username, password=password,
        expires_at=expires_at,
        enabled=bool(sub["desired_enabled"]),
        max_connections=(plan and plan.max_connections) or (product.max_connections if product else 1),
        bouquets=(plan and plan.bouquets) or (product.bouquets if product else ()),
        package=(plan and plan.package) or (product.package if product else None),
        outputs=(product.outputs if product else ()) or (panel.outputs if panel else ()),
        notes=f"iptvsync {sub['key']}")


def expiry_mismatch(want: int, got: int) -> str:
    """"expiry 2027-01-30 12:00 -03, panel has 15:00 -03: 3 h off, check the API user's timezone"."""
    off = got - want
    text = f"expiry {human(want)}, panel has {human(got, same_day_as=want)}"
    hours, rest = divmod(abs(off), 3600)
    if hours and min(rest, 3600 - rest) <= EXPIRY_TOLERANCE_S and abs(off) <= 14 * 3600:
        hours = round(abs(off) / 3600)
        return f"{text}: {hours} h off, check the API user's timezone (expiries are sent in UTC)"
    days = abs(off) / 86400
    return f"{text}: {days:.1f} days {'later' if off > 0 else 'earlier'}" if days >= 1 else \
        f"{text}: {abs(off) // 60} min off"


def mismatch(line: Line, spec: LineSpec, by_package: bool, slack_s: int = RESELLER_SLACK_S) -> str | None:
    """Why ``line`` is not yet what ``spec`` asks, or None when it is.

    A line the buyer's app cannot play (no output format) is not in sync. ``slack_s``: how
    short a package-bought expiry may be (half a package period: months are 28-31 days).
    """
    if line.enabled != spec.enabled:
        return f"enabled is {line.enabled}, want {spec.enabled}"
    if not spec.enabled:
        return None  # a disabled line's expiry and bouquets do not matter
    if line.is_trial:
        return "line is a trial"
    if line.expires_at is None:
        return "line never expires"
    if line.outputs is not None and not line.outputs:
        return "line has no output format (the buyer's app cannot play it)"
    if by_package:
        if spec.expires_at - line.expires_at > slack_s:
            return f"expiry {human(spec.expires_at)}, panel has {human(line.expires_at)}: short by a package or more"
        return None
    if line.outputs is not None and spec.outputs and set(line.outputs) != set(spec.outputs):
        return f"outputs {list(line.outputs)}, want {list(spec.outputs)}"
    if abs(line.expires_at - spec.expires_at) > EXPIRY_TOLERANCE_S:
        return expiry_mismatch(spec.expires_at, line.expires_at)
    if line.max_connections is not None and line.max_connections != spec.max_connections:
        return f"max_connections {line.max_connections}, want {spec.max_connections}"
    if line.bouquets is not None and spec.bouquets and sorted(line.bouquets) != sorted(spec.bouquets):
        return f"bouquets {list(line.bouquets)}, want {list(spec.bouquets)}"
    return None


def ensure_credentials(ledger: Ledger, cfg: Config, sub: dict) -> tuple[str, str]:
    """Username and password for this subscription, committed before any panel call."""
    from ..credentials import decrypt  # cryptography: imported by the runs that sync something

    cfg.require("IPTVSYNC_SECRET_KEY")
    if not (sub["username"] and sub["password_enc"]):
        store_new_credentials(ledger, cfg, [sub])
        sub = ledger.one("SELECT username, password_enc FROM subscriptions WHERE id = ?", (sub["id"],))
    return sub["username"], decrypt(sub["password_enc"], cfg.keyring)


def store_new_credentials(ledger: Ledger, cfg: Config, subs: list[dict]) -> None:
    """Credentials for every given subscription that will need a line and has none, in ONE
    transaction (one fsync instead of one per subscription), still before any panel call."""
    from ..credentials import encrypt, new_password, username_for

    secret = cfg.require("IPTVSYNC_SECRET_KEY")
    with ledger.tx() as conn:
        for sub in subs:
            if not sub["password_enc"]:
                conn.execute("UPDATE subscriptions SET username = :u, password_enc = :p WHERE id = :id"
                             " AND password_enc IS NULL",
                             {"u": username_for(sub["key"], secret), "p": encrypt(new_password(), secret),
                              "id": sub["id"]})


def converge(panel: Panel, spec: LineSpec, line_id: str | None, calls: list) -> tuple[Line | None, str]:
    """Read, create or update until the panel matches ``spec``; returns the verified line."""
    line = panel.get(spec.username, spec.password, line_id)
    calls.append(("get", spec.username))
    action = "none"
    if line is None:
        if not spec.enabled:
            return None, "absent"  # nothing to disable
        try:
            line = panel.create(spec)
            calls.append(("create", spec.username))
        except PanelError as exc:
            if not exc.ambiguous:
                raise
            line = panel.get(spec.username, spec.password, line_id)  # did it land after all?
            calls.append(("get", spec.username))
            if line is None:
                raise PanelError(f"create was ambiguous and no line is there: {exc}", transient=True) from None
        action = "created"
        if panel.caps.chooses_credentials:  # the panel may have chosen the credentials
            spec = LineSpec(**{**spec.__dict__, "username": line.username, "password": line.password})
    # A reseller pays one package per update; never more calls than periods missing (+1).
    rounds, slack = 1, RESELLER_SLACK_S
    if panel.caps.extends_by_package and spec.package:
        slack = panel.shortfall_slack_s(spec)
        if line.expires_at is not None:
            rounds = max(1, math.ceil((spec.expires_at - line.expires_at) / 86400 / 28) + 1)
    for _ in range(rounds):
        why = mismatch(line, spec, panel.caps.extends_by_package, slack)
        if why is None:
            return line, action
        line = panel.update(line, spec)
        calls.append(("update", spec.username))
        action = "updated" if action == "none" else action
    why = mismatch(line, spec, panel.caps.extends_by_package, slack)
    if why:
        raise PanelError(f"read-back mismatch after write: {why}", transient=True)
    return line, action


def sync_one(ledger: Ledger, cfg: Config, panel: Panel, sub: dict, now: datetime, calls: list) -> Line | None:
    from ..credentials import encrypt

    if not sub["desired_enabled"] and not sub["password_enc"]:
        # Never paid, never had credentials, so no create call was ever made: nothing to disable.
        with ledger.tx() as conn:
            conn.execute("UPDATE subscriptions SET sync_status = :status, applied_at = :now WHERE id = :id"
                         " AND desired_enabled = 0 AND password_enc IS NULL",
                         {"status": SyncStatus.SYNCED, "now": iso(now), "id": sub["id"]})
        return None
    username, password = ensure_credentials(ledger, cfg, sub)
    spec = spec_for(sub, cfg, username, password, now)
    line, action = converge(panel, spec, sub["line_id"], calls)
    secret = cfg.require("IPTVSYNC_SECRET_KEY")
    with ledger.tx() as conn:
        values = {"id": sub["id"], "now": iso(now), "want_e": sub["desired_enabled"],
                  "want_x": sub["desired_expires_at"], "status": SyncStatus.SYNCED}
        if line is not None:
            # The panel's credentials are the ones that work (a reseller may pick its own).
            changed_pw = bool(line.password) and line.password != password
            values.update(line_id=line.line_id, enabled=int(line.enabled), expires=line.expires_at,
                          username=line.username or username,
                          password_enc=encrypt(line.password, secret) if changed_pw else None)
        else:
            values.update(line_id=None, enabled=0, expires=None, username=username, password_enc=None)
        # Only mark synced if the desired state did not move while we were talking to the panel.
        cur = conn.execute(
            "UPDATE subscriptions SET line_id = COALESCE(:line_id, line_id), applied_enabled = :enabled,"
            " applied_expires_at = :expires, applied_at = :now, username = :username,"
            " password_enc = COALESCE(:password_enc, password_enc), sync_status = :status, attempts = 0,"
            " run_after = NULL, last_error = NULL WHERE id = :id AND desired_enabled = :want_e"
            " AND desired_expires_at IS :want_x", values)
        if cur.rowcount:
            ledger.audit(f"panel.{action}", actor="process", subscription_id=sub["id"],
                         buyer_email=sub["buyer_email"], panel=panel.name, enabled=bool(values["enabled"]),
                         expires_at=values["expires"], line_id=values["line_id"])
    return line


def record_failure(ledger: Ledger, cfg: Config, sub: dict, exc: Exception, now: datetime) -> str:
    permanent = isinstance(exc, PanelError) and not exc.transient and not exc.ambiguous
    error = str(exc) if isinstance(exc, IptvsyncError) else f"{type(exc).__name__}: {exc}"  # a bug: say which
    with ledger.tx() as conn:
        attempts = sub["attempts"] + 1
        status = fail(conn, SYNC, sub["id"], attempts=attempts, error=error, now=now,
                      max_attempts=cfg.policy.max_attempts, final=SyncStatus.DEAD if permanent else None)
        dead = status == SyncStatus.DEAD
        ledger.audit("panel.failed", actor="process", subscription_id=sub["id"], buyer_email=sub["buyer_email"],
                     attempts=attempts, dead=dead, error=error[:500])
    return status


class Budget:
    """Bulk work's share of one run: at most ``calls`` panel calls, and none once ``preempt()``
    says fresher work waits (a new postback). Thread-safe; ``preempt`` is asked before the
    first subscription and then every ``check_every`` subscriptions (a count, not a clock, so
    the order of calls does not depend on timing)."""

    def __init__(self, calls: int, preempt=None, check_every: int = 4):
        self.calls, self.used = calls, 0
        self.preempt, self.check_every = preempt, check_every
        self.preempted = False
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """May one more subscription be synced?"""
        with self._lock:
            if self.preempted or self.used >= self.calls:
                return False
            if self.preempt is not None and self._taken % self.check_every == 0:
                self.preempted = bool(self.preempt())
            self._taken += 1
            return not self.preempted

    def spend(self, calls: int) -> None:
        with self._lock:
            self.used += calls


def due_subscriptions(ledger: Ledger, now: datetime, limit: int | None = None,
                      only: list[int] | None = None, skip: set[int] | None = None) -> list[dict]:
    among = f" AND id IN ({', '.join(str(int(i)) for i in only)})" if only is not None else ""
    if skip:
        among += f" AND id NOT IN ({', '.join(str(int(i)) for i in skip)})"
    return ledger.query(f"SELECT * FROM subscriptions WHERE {due(SYNC)}{among} ORDER BY id LIMIT :limit",
                        {"now": iso(now), "limit": -1 if limit is None else limit})


def sync_panels(ledger_path, cfg: Config, panels: dict[str, Panel], now: datetime,
                limit: int | None = None, *, only: list[int] | None = None, skip: set[int] | None = None,
                budget: Budget | None = None, breakers: dict[str, Breaker] | None = None) -> SyncResult:
    """Sync every due subscription (or the due ones among ``only``, none of ``skip``); each
    worker thread uses its own ledger connection. With a ``budget``, subscriptions past it are
    left for later and counted as ``deferred``. ``breakers`` (by panel) carry a panel's
    failures from one call to the next within a run."""
    result = SyncResult()
    if only is not None and not only:
        return result
    main = Ledger(ledger_path)
    if budget is not None:  # every subscription costs at least one call
        limit = min(limit if limit is not None else budget.calls, max(0, budget.calls - budget.used))
    due = due_subscriptions(main, now, limit, only, skip)
    needing = [sub for sub in due if sub["desired_enabled"] and not sub["password_enc"]]
    if needing:
        store_new_credentials(main, cfg, needing)
        due = due_subscriptions(main, now, limit, only, skip)
    main.close()
    by_panel: dict[str, list[dict]] = {}
    for sub in due:
        by_panel.setdefault(sub["panel"], []).append(sub)
    lock = threading.Lock()
    local = threading.local()
    opened: list[Ledger] = []

    def ledger_for_thread() -> Ledger:
        if not hasattr(local, "ledger"):
            local.ledger = Ledger(ledger_path, migrate=False)
            with lock:
                opened.append(local.ledger)
        return local.ledger

    def work(panel: Panel, breaker: Breaker, sub: dict) -> None:
        if breaker.open:
            with lock:
                result.skipped += 1
            return
        if budget is not None and not budget.take():
            with lock:
                result.deferred += 1
            return
        led = ledger_for_thread()
        calls: list = []
        try:
            sync_one(led, cfg, panel, sub, now, calls)
            breaker.record(ok=True)
            with lock:
                result.synced += 1
        except Exception as exc:
            if not isinstance(exc, PanelError):
                log.exception("sync of subscription %s failed", sub["id"])
            permanent = isinstance(exc, PanelError) and not exc.transient and not exc.ambiguous
            breaker.record(ok=False, trip=permanent)
            status = record_failure(led, cfg, sub, exc, now)
            log.warning("subscription %s on panel %s: %s (%s)", sub["id"], panel.name, exc, status)
            with lock:
                result.failed += 1
                result.dead += status == SyncStatus.DEAD
        finally:
            if budget is not None:
                budget.spend(len(calls))
            with lock:
                result.calls.extend(calls)

    pools = []
    for name, subs in by_panel.items():
        panel = panels.get(name)
        if panel is None:
            log.error("panel %s is not configured; %d subscription(s) wait", name, len(subs))
            result.skipped += len(subs)
            continue
        pool = ThreadPoolExecutor(max_workers=cfg.panels[name].max_concurrency, thread_name_prefix=f"panel-{name}")
        breaker = Breaker() if breakers is None else breakers.setdefault(name, Breaker())
        for sub in subs:
            pool.submit(work, panel, breaker, sub)
        pools.append(pool)
    for pool in pools:
        pool.shutdown(wait=True)
    for led in opened:
        led.close()
    return result
