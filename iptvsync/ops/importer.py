"""``iptvsync subs import``: a shop that already sells brings its existing lines in.

Each line (read from the panel's ``lines()``, or named in a CSV) becomes a subscription that
owns it, so the buyer's next Monetizze renewal extends that line instead of creating a second
one. A line is matched to its Monetizze subscription by the CSV's ``subscription`` column, or
by the buyer's email (and the product) among the sales of the transactions API when
``MONETIZZE_CONSUMER_KEY`` is set:

* matched: one subscription code; the subscription is ``sub:<code>`` and renews by itself;
* unmatched: no subscription found; imported as ``import:<panel>:<username>``, running to its
  paid_until (a later renewal of an unknown assinatura is held for ``inbox attach``);
* ambiguous: several candidate codes, a code or a line claimed twice, or a key that already
  owns another line: not imported, the reason says why;
* not importable: no buyer email, the line not on the panel, or the product unknown.

The import sends no email and writes to no panel: the subscription records the line as it is
(``sync_status`` synced, the line's expiry and state as applied), ``paid_until`` comes from a
grant keyed ``import:<username>``, and one ``subscription.imported`` audit row names the
source. A second run finds every line already imported and changes nothing. Held renewals of
an imported subscription go back to pending (``process`` then extends the line once), and
the Monetizze sales that the imported ``paid_until`` already reflects are stored as ignored
evidence, so ``reconcile monetizze`` does not bring them in again as new payments.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..clock import SAO_PAULO, iso, now
from ..config import Config
from ..credentials import encrypt
from ..engine.derive import recompute
from ..errors import PanelError, UsageError
from ..ledger.db import Ledger
from ..ledger.inbox import inbox_row, store_rows
from ..ledger.queue import INBOX, InboxStatus, SyncStatus, requeue
from ..panels.base import Line
from .subs import EMAIL_ADDRESS

CSV_COLUMNS = ("email", "product", "username", "paid_until")  # + subscription, password, line_id
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
OUTCOMES = ("matched", "unmatched", "ambiguous", "not importable", "already imported")
IMPORTABLE = ("matched", "unmatched")
#: How far back an import's grant starts (see ``_import_one``): the Monetizze window's default.
BACKDATE = timedelta(days=400)
DATE_FORMATS = "DD/MM/YYYY or YYYY-MM-DD"
BRAZILIAN_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2}))?")
NOT_ASKED = "Monetizze not asked (MONETIZZE_CONSUMER_KEY not set)"


@dataclass
class Candidate:
    """One line to import, and what became of it."""

    username: str
    email: str | None
    product: str
    paid_until: datetime | None
    subscription: str | None = None  # Monetizze assinatura code
    line: Line | None = field(default=None, repr=False)
    outcome: str = "unmatched"
    reason: str = ""
    action: str = ""  # imported | would import

    def row(self) -> dict:
        return {"outcome": self.outcome, "action": self.action, "username": self.username,
                "buyer_email": self.email, "product": self.product, "subscription": self.subscription,
                "paid_until": iso(self.paid_until), "reason": self.reason}


def read_csv(path: Path, default_product: str | None) -> list[dict]:
    """The CSV's rows as dicts (header: email, product, username, paid_until[, subscription,
    password, line_id]); ``product`` may be left out when ``--product`` is given."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in reader.fieldnames or ()]
            missing = [c for c in CSV_COLUMNS if c not in header and not (c == "product" and default_product)]
            if missing:
                raise UsageError(f"{path}: the CSV lacks column(s) {', '.join(missing)} (header: email, product,"
                                 " username, paid_until, and optionally subscription, password, line_id)")
            return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: not a UTF-8 CSV ({exc})") from None


def paid_until_of(text: str) -> datetime | None:
    """``30/01/2027`` or ``30/01/2027 12:00`` (Brazilian day first), ``2027-01-30``, ``2027-01-30
    12:00`` (São Paulo time) or ISO with a zone; None if unreadable."""
    text = text.strip()
    brazilian = BRAZILIAN_DATE.fullmatch(text)
    if brazilian:
        day, month, year, hour, minute = (int(g or 0) for g in brazilian.groups())
        try:
            return datetime(year, month, day, hour, minute, tzinfo=SAO_PAULO)
        except ValueError:
            return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=SAO_PAULO)


def candidates(cfg: Config, panel, *, product: str | None, csv_path: Path | None) -> list[Candidate]:
    """The lines to import, each found on the panel when the panel can list or find it."""
    listed = {line.username: line for line in panel.lines()} if panel.caps.lists_lines else None
    found: list[Candidate] = []
    if csv_path is None:
        if listed is None:
            raise UsageError(f"panel {panel.name} ({panel.kind}) cannot list its lines: import from a CSV"
                             " (--csv FILE)")
        for line in listed.values():
            notes = " ".join(str(line.raw.get(k) or "") for k in ("admin_notes", "reseller_notes", "contact"))
            match = EMAIL.search(notes)
            found.append(Candidate(line.username, match.group(0).lower() if match else None, product or "",
                                   _moment(line.expires_at), line=line))
        return found
    for row in read_csv(csv_path, product):
        item = Candidate(row.get("username", ""), (row.get("email") or "").lower() or None,
                         row.get("product") or product or "", paid_until_of(row.get("paid_until", "")),
                         row.get("subscription") or None)
        item.line = listed.get(item.username) if listed is not None else _get(panel, item, row)
        found.append(item)
    return found


def _get(panel, item: Candidate, row: dict) -> Line | None:
    if not row.get("password"):
        return None
    try:
        return panel.get(item.username, row["password"], row.get("line_id") or None)
    except PanelError:
        return None


def _moment(unix_s: int | None) -> datetime | None:
    return None if unix_s is None else datetime.fromtimestamp(unix_s, SAO_PAULO)


def monetizze_subscriptions(cfg: Config, since: datetime, until: datetime, api=None) -> tuple[dict, list]:
    """(email, product) -> {assinatura codes} from the transactions API, and the sales read."""
    from ..monetizze.api import MonetizzeApi, fetch_sales
    from ..monetizze.postback import parse
    from .reconcile import JSON, sale_body

    api = api or MonetizzeApi(cfg.monetizze.api_url, cfg.require("MONETIZZE_CONSUMER_KEY"))
    rows, _ = fetch_sales(api, since, until)
    codes: dict[tuple[str, str], set[str]] = defaultdict(set)
    sales = []
    for body in (sale_body(row, cfg.secrets.chave_unica) for row in rows):
        pb = parse(body, JSON)[1]
        if pb.subscription_code and pb.buyer_email and pb.product_code:
            codes[(pb.buyer_email, pb.product_code)].add(pb.subscription_code)
            sales.append((body, pb))
    return codes, sales


def assess(ledger: Ledger, cfg: Config, panel_name: str, items: list[Candidate], codes: dict | None) -> None:
    """Set each candidate's outcome (matched, unmatched, ambiguous, not importable) and reason."""
    claimed_codes: dict[str, int] = defaultdict(int)
    for item in items:
        if item.subscription is None and codes is not None and item.email:
            found = codes.get((item.email, item.product), set())
            if len(found) > 1:
                item.outcome, item.reason = "ambiguous", f"Monetizze has {len(found)} subscriptions for this " \
                    f"buyer and product ({', '.join(sorted(found))}): put the right one in a CSV"
                continue
            item.subscription = next(iter(found), None)
        if item.subscription:
            claimed_codes[item.subscription] += 1
    for item in items:
        if item.outcome == "ambiguous":
            continue
        problem = _problem(ledger, cfg, panel_name, item, claimed_codes)
        if problem:
            item.outcome, item.reason = problem
        elif item.subscription:
            item.outcome = "matched"
        else:
            found = "no Monetizze subscription found" if codes is not None else NOT_ASKED
            item.outcome, item.reason = "unmatched", f"{found}: runs to paid_until"


def _problem(ledger: Ledger, cfg: Config, panel_name: str, item: Candidate, claimed: dict) -> tuple | None:
    if item.product not in cfg.products:
        return "not importable", f"product {item.product or '(none)'} is not a [products.<code>]"
    if cfg.products[item.product].panel != panel_name:
        return "not importable", f"product {item.product} is sold on panel {cfg.products[item.product].panel}"
    if not item.email:
        return "not importable", "no buyer email (notes or CSV): renewals could not be matched"
    if not EMAIL_ADDRESS.fullmatch(item.email):
        return "not importable", f"buyer email {item.email!r} is not an email address"
    if item.line is None:
        return "not importable", "line not found on the panel"
    if item.paid_until is None:
        return "not importable", f"no paid_until (the line never expires, or the CSV date is unreadable: use" \
                                 f" {DATE_FORMATS})"
    if item.subscription and claimed[item.subscription] > 1:
        return "ambiguous", f"subscription {item.subscription} is claimed by {claimed[item.subscription]} lines"
    owner = ledger.one("SELECT key, username FROM subscriptions WHERE key = ? OR username = ?",
                       (key_of(panel_name, item), item.username))
    if owner and owner["username"] == item.username and owner["key"] == key_of(panel_name, item):
        return "already imported", "owns this line already: nothing to do"
    if owner:
        return "ambiguous", f"subscription {owner['key']} already owns line {owner['username']}"
    return None


def key_of(panel_name: str, item: Candidate) -> str:
    return f"sub:{item.subscription}" if item.subscription else f"import:{panel_name}:{item.username}"


def import_lines(ledger: Ledger, cfg: Config, panel, *, product: str | None = None, csv_path: Path | None = None,
                 since: datetime | None = None, dry_run: bool = False, api=None, actor: str = "operator") -> dict:
    """Read, match and (unless ``dry_run``) import; the report's ``lines`` has one row each."""
    if product is not None and product not in cfg.products:
        raise UsageError(f"--product {product} is not a [products.<code>] of {cfg.path}"
                         f" (known: {', '.join(cfg.products)})")
    if csv_path is None and product is None:
        raise UsageError("--product is needed to import from the panel (its lines do not say what was sold)")
    items = candidates(cfg, panel, product=product, csv_path=csv_path)
    t = now()
    codes, sales = None, []
    if cfg.secrets.consumer_key or api is not None:
        codes, sales = monetizze_subscriptions(cfg, since or t - timedelta(days=400), t, api)
    assess(ledger, cfg, panel.name, items, codes)
    todo = [item for item in items if item.outcome in IMPORTABLE]
    for item in todo:
        item.action = "would import" if dry_run else "imported"
    if todo and not dry_run:
        secret = cfg.require("IPTVSYNC_SECRET_KEY")
        for item in todo:
            _import_one(ledger, cfg, panel.name, item, secret, t, actor, "csv" if csv_path else "panel")
        _keep_reflected_sales(ledger, sales, {item.subscription for item in todo if item.subscription})
    counts = {o: sum(i.outcome == o for i in items) for o in OUTCOMES}
    return {"dry_run": dry_run, "panel": panel.name, "monetizze": codes is not None, **counts,
            "imported": 0 if dry_run else len(todo), "lines": [i.row() for i in items]}


def _import_one(ledger: Ledger, cfg: Config, panel_name: str, item: Candidate, secret: str, t: datetime,
                actor: str, source: str) -> None:
    """One subscription owning the line as it is: no email, no panel write, audited."""
    line, product = item.line, cfg.products[item.product]
    key = key_of(panel_name, item)
    # A grant that starts before any payment still to come (BACKDATE before now) and ends
    # exactly at paid_until: a renewal paid from now on folds after it and adds its period.
    days = max(1, math.ceil((item.paid_until - (t - BACKDATE)).total_seconds() / 86400))
    with ledger.tx() as conn:
        sub = conn.execute(
            "INSERT INTO subscriptions (key, product_code, product_name, panel, buyer_email, recurring, username,"
            " password_enc, line_id, created_at, updated_at) VALUES (:key, :product, :pname, :panel, :email,"
            " :recurring, :username, :password, :line_id, :now, :now) RETURNING *",
            {"key": key, "product": product.code, "pname": product.name, "panel": panel_name,
             "email": item.email, "recurring": int(bool(item.subscription)), "username": line.username,
             "password": encrypt(line.password, secret), "line_id": line.line_id, "now": iso(t)}).fetchone()
        # paid_until is derived: the grant ends exactly at the line's paid_until
        conn.execute("INSERT INTO grants (grant_key, subscription_id, days, granted_at, actor, note)"
                     " VALUES (:key, :sub, :days, :at, :actor, 'subs import')",
                     {"key": f"import:{line.username}", "sub": sub["id"], "days": days,
                      "at": iso(item.paid_until - timedelta(days=days)), "actor": actor})
        recompute(conn, sub["id"], cfg, t, current=dict(sub))
        # the line is as the panel has it: nothing to push until the ledger moves
        conn.execute("UPDATE subscriptions SET sync_status = :status, applied_enabled = :enabled,"
                     " applied_expires_at = :expires, applied_at = :now WHERE id = :id",
                     {"status": SyncStatus.SYNCED, "enabled": int(line.enabled), "expires": line.expires_at,
                      "now": iso(t), "id": sub["id"]})
        held = [r[0] for r in conn.execute("SELECT id FROM inbox WHERE status = :status AND subscription_code = :code",
                                           {"status": InboxStatus.HELD, "code": item.subscription})]
        if held:
            requeue(conn, INBOX, ids=held, statuses=[InboxStatus.HELD])
        ledger.audit("subscription.imported", actor=actor, subscription_id=sub["id"], buyer_email=item.email,
                     key=key, username=line.username, line_id=line.line_id, paid_until=iso(item.paid_until),
                     source=source, held_requeued=held or None)


def _keep_reflected_sales(ledger: Ledger, sales: list, imported_codes: set) -> None:
    """Store the Monetizze sales of imported subscriptions as ignored evidence: the imported
    paid_until already counts them, so neither a late postback nor ``reconcile monetizze``
    may pay them again."""
    rows = []
    for body, pb in sales:
        if pb.subscription_code in imported_codes:
            row = inbox_row(pb, body, content_type="application/json", remote_addr=None, source="import")
            rows.append({**row, "status": InboxStatus.IGNORED,
                         "reason": "subs import: already counted in the imported paid_until"})
    if rows:
        with ledger.tx() as conn:
            store_rows(conn, rows)
