"""Reconciliation: the ledger compared with what Monetizze and the panels say.

``reconcile_monetizze`` reads recent sales from Monetizze's API 2.1 and stores the ones the
inbox lacks in the inbox (``source = 'reconcile'``), where ``process`` applies them exactly
like postbacks: a lost postback costs a delay, never a sale. ``check_panels`` reads every
known line and reports drift from the ledger's desired state; ``mark_for_repair`` queues the
drifting subscriptions for ``process``. Neither writes to Monetizze or to a panel.

The API client is ``iptvsync.monetizze.api``. A row whose status, sale code or payment date is unreadable, or
whose subscription/parcela disagree with a postback already stored for the same sale, is
reported and never stored (an API row without ``assinatura`` would otherwise make a second
subscription, hence a second line), except a refund, which ``refund_by_sale`` stores under
the one charge the inbox holds for its sale; a page count that does not add up is a warning.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import StrEnum

from ..clock import iso
from ..config import Config
from ..credentials import decrypt
from ..engine.sync import mismatch, spec_for
from ..errors import PanelError
from ..ledger.db import Ledger
from ..ledger.inbox import inbox_row, store_rows
from ..ledger.queue import SYNC, requeue
from ..monetizze.api import MonetizzeApi, fetch_sales
from ..monetizze.postback import Postback, parse
from ..monetizze.redact import redact
from ..panels.base import Panel
from ..panels.breaker import Breaker

JSON = "application/json"


class Outcome(StrEnum):
    """What ``reconcile monetizze`` did with one API row (a report value, not a queue status)."""

    NEW = "new"
    KNOWN = "known"  # the inbox has it
    INJECTED = "injected"
    WOULD_INJECT = "would inject"  # --dry-run
    SKIPPED = "skipped"  # not safe to store; the reason says why

#: What a sale's status can classify as. Anything else (unreadable, abandoned checkout) is
#: reported and left alone: the API has no subscription events, postbacks carry those.
SALE_KINDS = ("waiting", "approved", "complete", "cancelled", "refunded", "blocked")


# --- Monetizze → inbox ----------------------------------------------------------------------

def sale_body(row: dict, chave_unica: str) -> bytes:
    """What the inbox stores for an API row: its JSON, with the account key blanked."""
    body = json.dumps({**row, "chave_unica": ""}, ensure_ascii=False).encode()
    return redact(body, chave_unica)


def assess(ledger: Ledger, pb: Postback) -> tuple[str, str | None]:
    """``new``, ``known`` or ``skipped`` (with why) for one API row, by what the inbox holds."""
    if pb.is_test:
        return Outcome.SKIPPED, "Monetizze test product"
    if pb.kind not in SALE_KINDS or not pb.sale_code:
        return Outcome.SKIPPED, f"no sale status or sale code to act on ({pb.kind})"
    if pb.kind in ("approved", "complete") and pb.paid_at is None:
        return Outcome.SKIPPED, "paid status without a payment date"
    stored = ledger.query("SELECT dedupe_key, subscription_code, parcela FROM inbox WHERE sale_code = :sale",
                          {"sale": pb.sale_code})
    if any(row["dedupe_key"] == pb.dedupe_key for row in stored):
        return Outcome.KNOWN, None
    for row in stored:
        if row["subscription_code"] != pb.subscription_code or (row["parcela"] is None) != (pb.parcela is None):
            return Outcome.SKIPPED, (f"the inbox has this sale with subscription {row['subscription_code']} parcela "
                               f"{row['parcela']}, the API row {pb.subscription_code} parcela {pb.parcela}: "
                               "check by hand")
    return Outcome.NEW, None


def refund_by_sale(ledger: Ledger, body: bytes, pb: Postback) -> tuple[bytes, Postback] | None:
    """A refund whose API row lacks ``assinatura``/parcela, or differs from the postbacks the
    inbox holds for its sale, re-keyed to that sale's one charge: a refund found by sale code
    is applied, never skipped (a refund left out keeps a refunded buyer's line running).
    None when the inbox holds the sale under more than one charge: which one is unknown."""
    held = {(row["subscription_code"], row["parcela"]) for row in ledger.query(
        "SELECT subscription_code, parcela FROM inbox WHERE sale_code = :sale", {"sale": pb.sale_code})}
    if len(held) != 1:
        return None
    subscription, parcela = held.pop()
    row = json.loads(body)
    block = row.get("assinatura") if isinstance(row.get("assinatura"), dict) else {}
    row.pop("assinatura", None)
    if subscription is not None:
        row["assinatura"] = {**block, "codigo": subscription, "parcela": "" if parcela is None else str(parcela)}
    rekeyed = json.dumps(row, ensure_ascii=False).encode()
    return rekeyed, parse(rekeyed, JSON)[1]


def reconcile_monetizze(ledger: Ledger, cfg: Config, *, since: datetime, until: datetime,
                        dry_run: bool = False, api: MonetizzeApi | None = None) -> dict:
    """Fetch the window's sales, store the ones the inbox lacks (unless ``dry_run``), report."""
    api = api or MonetizzeApi(cfg.monetizze.api_url, cfg.require("MONETIZZE_CONSUMER_KEY"))
    found, windows = fetch_sales(api, since, until)
    sales: dict[str, tuple[bytes, Postback]] = {}
    for body in (sale_body(row, cfg.secrets.chave_unica) for row in found):
        pb = parse(body, JSON)[1]
        sales.setdefault(pb.dedupe_key, (body, pb))  # the first copy of a sale in both windows
    report_rows, new = [], []
    for body, pb in sorted(sales.values(), key=lambda item: (item[1].started_at or "", item[1].parcela or 0)):
        outcome, reason = assess(ledger, pb)
        if outcome == Outcome.SKIPPED and pb.kind == "refunded":
            rekeyed = refund_by_sale(ledger, body, pb)
            if rekeyed is not None:
                note = (f"refund applied to the sale's charge (subscription {rekeyed[1].subscription_code}"
                        f" parcela {rekeyed[1].parcela}); the API row had {pb.subscription_code} parcela {pb.parcela}")
                body, pb = rekeyed
                outcome, reason = assess(ledger, pb)
                reason = reason or note
        row = {"sale_code": pb.sale_code, "event": pb.event, "kind": pb.kind, "product_code": pb.product_code,
               "mapped": pb.product_code in cfg.products, "buyer_email": pb.buyer_email,
               "outcome": Outcome.WOULD_INJECT if outcome == Outcome.NEW and dry_run else outcome, "reason": reason,
               "inbox_id": None}
        report_rows.append(row)
        if outcome == Outcome.NEW:
            new.append((row, pb, body))
    if new and not dry_run:
        _inject(ledger, new)
    counts = {k: sum(r["outcome"] == k for r in report_rows)
              for k in (Outcome.KNOWN, Outcome.INJECTED, Outcome.SKIPPED)}
    return {
        "since": iso(since), "until": iso(until), "dry_run": dry_run,
        "pages": sum(w["pages"] for w in windows), "fetched": len(report_rows), **counts, "new": len(new),
        "unmapped": sum(not r["mapped"] for r in report_rows
                        if r["outcome"] in (Outcome.INJECTED, Outcome.WOULD_INJECT)),
        "windows": windows, "warnings": _warnings(windows),
        "sales": [r for r in report_rows if r["outcome"] != Outcome.KNOWN],
    }


def _inject(ledger: Ledger, new: list[tuple[dict, Postback, bytes]]) -> None:
    with ledger.tx() as conn:
        stored = store_rows(conn, [inbox_row(pb, body, content_type=JSON, remote_addr=None, source="reconcile")
                                   for _, pb, body in new])
        for (row, pb, _), (inbox_id, duplicate) in zip(new, stored, strict=True):
            row["inbox_id"] = inbox_id
            row["outcome"] = Outcome.KNOWN if duplicate else Outcome.INJECTED  # the postback won the race
            if not duplicate:
                ledger.audit("inbox.reconciled", sale_code=pb.sale_code, buyer_email=pb.buyer_email,
                             event=pb.event, inbox_id=inbox_id, dedupe_key=pb.dedupe_key)


def _warnings(windows: list[dict]) -> list[str]:
    return [f"{w['by']} window: the API reported {w['record_count']} record(s) but returned {w['rows']}; "
            "rows may have moved between pages, run again" for w in windows
            if w["record_count"] is not None and w["rows"] < w["record_count"]]


# --- panels → drift -------------------------------------------------------------------------

def check_line(panel: Panel, cfg: Config, sub: dict, password: str, now: datetime) -> tuple[str | None, bool]:
    """(why the line differs from the ledger or None, whether ``process`` can repair it)."""
    spec = spec_for(sub, cfg, sub["username"], password, now)
    line = panel.get(spec.username, spec.password, sub["line_id"])
    if line is None:
        return ("line missing", True) if spec.enabled else (None, False)
    if line.banned and spec.enabled:
        return "line banned on the panel (an operator's ban: iptvsync never lifts it)", False
    why = mismatch(line, spec, panel.caps.extends_by_package)
    if why:
        return why, True
    if line.password and line.password != password:
        return "the panel's password is not the one the buyer was sent", False
    return None, False


#: Subscriptions read per page by ``reconcile panel``: only one page's rows (and decrypted
#: passwords) are held at a time, whatever the number of lines.
PAGE = 500


def check_panels(ledger: Ledger, cfg: Config, panels: dict[str, Panel], now: datetime,
                 panel_name: str | None = None) -> Iterator[dict]:
    """One row per subscription with credentials, in id order: its drift, or the error reading
    its line. Pages through the ledger (keyset on id); passwords are decrypted a page at a time."""
    cfg.require("IPTVSYNC_SECRET_KEY")
    breakers: dict[str, Breaker] = {}  # a panel failing repeatedly is not read for the rest of the pass
    after = 0
    while True:
        page = ledger.query("SELECT * FROM subscriptions WHERE id > :after AND username IS NOT NULL"
                            " AND password_enc IS NOT NULL AND (:panel IS NULL OR panel = :panel)"
                            " ORDER BY id LIMIT :page", {"after": after, "panel": panel_name, "page": PAGE})
        if not page:
            return
        after = page[-1]["id"]
        by_panel: dict[str, list[dict]] = {}
        for sub in page:
            by_panel.setdefault(sub["panel"], []).append(sub)
        rows = []
        for name, group in by_panel.items():
            panel = panels.get(name)
            if panel is None:
                rows += [_drift_row(sub, error=f"panel {name!r} is not configured") for sub in group]
                continue
            passwords = {sub["id"]: decrypt(sub["password_enc"], cfg.keyring) for sub in group}
            rows += _check_group(panel, cfg, group, passwords, now, breakers)
        yield from sorted(rows, key=lambda row: row["subscription"])


def reconcile_panels(ledger: Ledger, cfg: Config, panels: dict[str, Panel], now: datetime,
                     panel_name: str | None = None, *, fix: bool = False) -> dict:
    """``reconcile panel``: counts, and the rows that drift or could not be read (the only ones
    kept); with ``fix``, drifting lines are queued for ``process`` page by page, where the
    repairs are bulk work within its per-run budget."""
    report = {"checked": 0, "in_sync": 0, "drift": 0, "errors": 0, "fixed": 0, "subscriptions": []}
    page: list[dict] = []
    for row in check_panels(ledger, cfg, panels, now, panel_name):
        report["checked"] += 1
        report["in_sync"] += not row["drift"] and not row["error"]
        report["drift"] += bool(row["drift"])
        report["errors"] += bool(row["error"])
        if row["drift"] or row["error"]:
            report["subscriptions"].append(row)
            page.append(row)
        if fix and len(page) >= PAGE:
            report["fixed"] += mark_for_repair(ledger, page)
            page = []
    if fix:
        report["fixed"] += mark_for_repair(ledger, page)
    return report


def _check_group(panel: Panel, cfg: Config, subs: list[dict], passwords: dict[int, str], now: datetime,
                 breakers: dict) -> list[dict]:
    """One panel's lines, read concurrently up to its ``max_concurrency``, behind a breaker
    (one per panel for the whole pass)."""
    breaker = breakers.setdefault(panel.name, Breaker())  # thread-safe

    def check(sub: dict) -> dict:
        if breaker.open:
            return _drift_row(sub, error="not read: the panel failed repeatedly in this run")
        try:
            drift, fixable = check_line(panel, cfg, sub, passwords[sub["id"]], now)
        except PanelError as exc:
            breaker.record(ok=False, trip=not exc.transient and not exc.ambiguous)
            return _drift_row(sub, error=str(exc))
        breaker.record(ok=True)
        return _drift_row(sub, drift=drift, fixable=fixable)

    with ThreadPoolExecutor(max_workers=cfg.panels[panel.name].max_concurrency) as pool:
        return list(pool.map(check, subs))


def _drift_row(sub: dict, *, drift: str | None = None, fixable: bool = False, error: str | None = None) -> dict:
    return {"subscription": sub["id"], "key": sub["key"], "panel": sub["panel"], "buyer_email": sub["buyer_email"],
            "username": sub["username"], "sync_status": sub["sync_status"], "drift": drift, "fixable": fixable,
            "error": error, "fixed": False}


def mark_for_repair(ledger: Ledger, rows: list[dict]) -> int:
    """Queue each repairable drifting subscription for the next ``process``; returns how many."""
    fixable = [row for row in rows if row["drift"] and row["fixable"]]
    if not fixable:
        return 0
    with ledger.tx() as conn:
        for row in fixable:
            requeue(conn, SYNC, ids=[row["subscription"]])
            ledger.audit("reconcile.drift", subscription_id=row["subscription"], buyer_email=row["buyer_email"],
                         panel=row["panel"], drift=row["drift"])
            row["fixed"] = True
    return len(fixable)
