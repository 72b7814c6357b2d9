"""Reconciliation: the ledger compared with what Monetizze and the panels say.

``reconcile_monetizze`` reads recent sales from Monetizze's API 2.1 and stores the ones the
inbox lacks in the inbox (``source = 'reconcile'``), where ``process`` applies them exactly
like postbacks: a lost postback costs a delay, never a sale. ``check_panels`` reads every
known line and reports drift from the ledger's desired state; ``mark_for_repair`` queues the
drifting subscriptions for ``process``. Neither writes to Monetizze or to a panel.

What third parties say about the API but Monetizze does not confirm, and the defence here:
the reply envelope (``status``/``dados``/``pages``/``recordCount``) is checked and anything
else is an error; the token lifetime is unknown, so a fresh token is taken per run and one
403 gets one new token; a row whose status, sale code or payment date is unreadable, or
whose subscription/parcela disagree with a postback already stored for the same sale, is
reported and never stored (an API row without ``assinatura`` would otherwise make a second
subscription, hence a second line); a page count that does not add up is a warning.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

import requests

from .clock import SAO_PAULO, iso
from .config import Config
from .credentials import decrypt
from .engine.sync import Breaker, mismatch, spec_for
from .errors import MonetizzeApiError, PanelError
from .inbox import inbox_row, store_rows
from .ledger import Ledger
from .panels.base import Panel
from .postback import Postback, parse, redact

JSON = "application/json"
TIMEOUT_S = (10.0, 30.0)  # (connect, read)
MAX_PAGES = 200  # per window; 100 rows a page (UNCONFIRMED) makes 20,000 sales
#: Query parameters of the two windows: when the sale was created, and when it was paid.
#: A boleto issued before ``--since`` and paid after it is only in the second one.
WINDOWS = {"created": ("date_min", "date_max"), "finalized": ("end_date_min", "end_date_max")}
#: What a sale's status can classify as. Anything else (unreadable, abandoned checkout) is
#: reported and left alone: the API has no subscription events, postbacks carry those.
SALE_KINDS = ("waiting", "approved", "complete", "cancelled", "refunded", "blocked")


class MonetizzeApi:
    """``GET /token`` then ``GET /transactions`` page by page; secrets never reach a message."""

    def __init__(self, api_url: str, consumer_key: str, timeout_s: tuple[float, float] = TIMEOUT_S):
        self.url = api_url.rstrip("/")
        self.host = urlsplit(self.url).netloc or self.url
        self.timeout = timeout_s
        self._key = consumer_key
        self._token: str | None = None
        self._secrets = [consumer_key]
        self.tokens_issued = 0
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "iptvsync"

    def new_token(self) -> str:
        body = self._get("token", {}, {"X_CONSUMER_KEY": self._key}, status_required=False)
        if body is None:
            raise self._error("/token: the consumer key was refused (403); check MONETIZZE_CONSUMER_KEY "
                              "(Ferramentas -> API)")
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise self._error("/token: the reply has no token")
        self.tokens_issued += 1
        self._token = token.strip()
        self._secrets.append(self._token)
        return self._token

    def transactions(self, params: dict) -> tuple[list[dict], int, int | None]:
        """Every row of one query: (rows, pages read, recordCount as the API reported it)."""
        rows, page = [], 1
        while True:
            body = self._page({**params, "page": page})
            dados = body.get("dados")
            if isinstance(dados, dict):  # PHP's json_encode of an array whose keys have gaps
                dados = list(dados.values())
            if dados is not None and not isinstance(dados, list):
                raise self._error(f"/transactions page {page}: 'dados' is not a list")
            rows += [row for row in dados or [] if isinstance(row, dict)]
            pages = _count(body.get("pages"))
            if page >= (1 if pages is None else pages):
                return rows, page, _count(body.get("recordCount"))
            if page >= MAX_PAGES:
                raise self._error(f"/transactions: more than {MAX_PAGES} pages; use a shorter --since")
            page += 1

    def _page(self, params: dict) -> dict:
        # The token's lifetime is not documented (third parties say 15 minutes idle): on a
        # 403, one new token and one more try; a second 403 is an error.
        for _ in range(2):
            body = self._get("transactions", params, {"TOKEN": self._token or self.new_token()})
            if body is not None:
                return body
            self._token = None
        raise self._error("/transactions: a fresh token was refused too (403); check the API key's permissions")

    def _get(self, path: str, params: dict, headers: dict, *, status_required: bool = True) -> dict | None:
        """The JSON object of a good reply; None for a 403 (HTTP or in the body)."""
        try:
            # No redirects: requests would resend the TOKEN/X_CONSUMER_KEY headers to any host.
            resp = self.session.get(f"{self.url}/{path}", params=params, headers=headers,
                                    timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise self._error(f"/{path}: no reply within {self.timeout[1]:g} s") from None
        except requests.RequestException as exc:  # str(exc) quotes URLs and internals: class only
            raise self._error(f"/{path}: cannot connect ({type(exc).__name__})") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        status = _count(body.get("status")) if body else None
        if resp.status_code == 403 or status == 403:
            return None
        if 300 <= resp.status_code < 400:
            location = resp.headers.get("Location", "").split("?")[0]
            raise self._error(f"/{path}: HTTP {resp.status_code} redirect to {location!r}; "
                              "set [monetizze] api_url to it")
        if resp.status_code != 200:
            raise self._error(f"/{path}: HTTP {resp.status_code}{self._detail(body)}")
        if body is None:
            kind = resp.headers.get("Content-Type", "no content type")
            raise self._error(f"/{path}: the reply is not a JSON object ({kind}, {len(resp.content)} bytes)")
        if status != 200 and (status_required or "status" in body):
            raise self._error(f"/{path}: status {body.get('status')!r} in the reply{self._detail(body)}")
        return body

    def _detail(self, body: dict | None) -> str:
        text = next((body[k] for k in ("Error", "error", "message") if body and body.get(k)), None)
        return f": {self._scrub(' '.join(str(text).split()))[:160]}" if text else ""

    def _error(self, text: str) -> MonetizzeApiError:
        return MonetizzeApiError(self._scrub(f"Monetizze API ({self.host}) {text}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _count(value) -> int | None:
    """An int from an int or a numeric string (``recordCount`` is a string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def api_time(moment: datetime) -> str:
    """The API's ``yyyy-mm-dd hh:mm:ss``, read as São Paulo time like every Monetizze date."""
    return moment.astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")


# --- Monetizze → inbox ----------------------------------------------------------------------

def fetch_sales(api: MonetizzeApi, since: datetime, until: datetime) -> tuple[list[dict], list[dict]]:
    """Rows created or finalized in the window (a sale may be in both), and what each window returned."""
    rows, windows = [], []
    for name, (low, high) in WINDOWS.items():
        found, pages, record_count = api.transactions({low: api_time(since), high: api_time(until)})
        windows.append({"by": name, "pages": pages, "record_count": record_count, "rows": len(found)})
        rows += found
    return rows, windows


def sale_body(row: dict, chave_unica: str) -> bytes:
    """What the inbox stores for an API row: its JSON, with the account key blanked."""
    body = json.dumps({**row, "chave_unica": ""}, ensure_ascii=False).encode()
    return redact(body, chave_unica)


def assess(ledger: Ledger, pb: Postback) -> tuple[str, str | None]:
    """``new``, ``known`` or ``skipped`` (with why) for one API row, by what the inbox holds."""
    if pb.is_test:
        return "skipped", "Monetizze test product"
    if pb.kind not in SALE_KINDS or not pb.sale_code:
        return "skipped", f"no sale status or sale code to act on ({pb.kind})"
    if pb.kind in ("approved", "complete") and pb.paid_at is None:
        return "skipped", "paid status without a payment date"
    stored = ledger.query("SELECT dedupe_key, subscription_code, parcela FROM inbox WHERE sale_code = :sale",
                          {"sale": pb.sale_code})
    if any(row["dedupe_key"] == pb.dedupe_key for row in stored):
        return "known", None
    for row in stored:
        if row["subscription_code"] != pb.subscription_code or (row["parcela"] is None) != (pb.parcela is None):
            return "skipped", (f"the inbox has this sale with subscription {row['subscription_code']} parcela "
                               f"{row['parcela']}, the API row {pb.subscription_code} parcela {pb.parcela}: "
                               "check by hand")
    return "new", None


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
        row = {"sale_code": pb.sale_code, "event": pb.event, "kind": pb.kind, "product_code": pb.product_code,
               "mapped": pb.product_code in cfg.products, "buyer_email": pb.buyer_email,
               "outcome": "would inject" if outcome == "new" and dry_run else outcome, "reason": reason,
               "inbox_id": None}
        report_rows.append(row)
        if outcome == "new":
            new.append((row, pb, body))
    if new and not dry_run:
        _inject(ledger, new)
    counts = {k: sum(r["outcome"] == k for r in report_rows) for k in ("known", "injected", "skipped")}
    return {
        "since": iso(since), "until": iso(until), "dry_run": dry_run,
        "pages": sum(w["pages"] for w in windows), "fetched": len(report_rows), **counts, "new": len(new),
        "unmapped": sum(not r["mapped"] for r in report_rows if r["outcome"] in ("injected", "would inject")),
        "windows": windows, "warnings": _warnings(windows),
        "sales": [r for r in report_rows if r["outcome"] != "known"],
    }


def _inject(ledger: Ledger, new: list[tuple[dict, Postback, bytes]]) -> None:
    with ledger.tx() as conn:
        stored = store_rows(conn, [inbox_row(pb, body, content_type=JSON, remote_addr=None, source="reconcile")
                                   for _, pb, body in new])
        for (row, pb, _), (inbox_id, duplicate) in zip(new, stored, strict=True):
            row["inbox_id"] = inbox_id
            row["outcome"] = "known" if duplicate else "injected"  # the postback won the race
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
    why = mismatch(line, spec, panel.extends_by_package)
    if why:
        return why, True
    if line.password and line.password != password:
        return "the panel's password is not the one the buyer was sent", False
    return None, False


def check_panels(ledger: Ledger, cfg: Config, panels: dict[str, Panel], now: datetime,
                 panel_name: str | None = None) -> list[dict]:
    """One row per subscription with credentials: its drift, or the error reading its line."""
    secret = cfg.require("IPTVSYNC_SECRET_KEY")
    subs = ledger.query("SELECT * FROM subscriptions WHERE username IS NOT NULL AND password_enc IS NOT NULL"
                        " AND (:panel IS NULL OR panel = :panel) ORDER BY id", {"panel": panel_name})
    by_panel: dict[str, list[dict]] = {}
    for sub in subs:
        by_panel.setdefault(sub["panel"], []).append(sub)
    rows = []
    for name, group in by_panel.items():
        panel = panels.get(name)
        if panel is None:
            rows += [_drift_row(sub, error=f"panel {name!r} is not configured") for sub in group]
            continue
        passwords = {sub["id"]: decrypt(sub["password_enc"], secret) for sub in group}
        rows += _check_group(panel, cfg, group, passwords, now)
    return sorted(rows, key=lambda row: row["subscription"])


def _check_group(panel: Panel, cfg: Config, subs: list[dict], passwords: dict[int, str], now: datetime) -> list[dict]:
    """One panel's lines, read concurrently up to its ``max_concurrency``, behind a breaker."""
    breaker = Breaker()  # thread-safe

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
            conn.execute("UPDATE subscriptions SET sync_status = 'pending', attempts = 0, run_after = NULL"
                         " WHERE id = :id", {"id": row["subscription"]})
            ledger.audit("reconcile.drift", subscription_id=row["subscription"], buyer_email=row["buyer_email"],
                         panel=row["panel"], drift=row["drift"])
            row["fixed"] = True
    return len(fixable)
