"""Stage 1 of ``process``: inbox → charges → subscriptions. Pure database work.

Postbacks are claimed and applied in batches: one ``BEGIN IMMEDIATE`` transaction (one fsync)
claims up to ``BATCH_ROWS`` pending rows and applies each inside its own ``SAVEPOINT``, together
with its status change. A row that fails is rolled back to its savepoint (its effects and audit
rows vanish, the audit chain stays linked) and parked as failed/unmapped in the same
transaction, while the other rows go on. A crash anywhere rolls back the whole open batch, so
every postback is either fully applied with its status, or still pending — never half.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import datetime

from ..clock import iso
from ..config import Config, ProductConfig
from ..ledger.db import Ledger
from ..ledger.inbox import raw_body
from ..ledger.outbox import queue, remember_phone
from ..ledger.queue import INBOX, InboxStatus, done, due, park
from ..monetizze.postback import SALE_PAID, Postback, from_facts, parse
from .derive import recompute
from .holds import Held, aliased, hold_if_second_line, hold_if_unknown_renewal
from .model import CHARGE_RANK, KIND_TO_CHARGE, PAYING, REINSTATING

log = logging.getLogger("iptvsync.apply")

#: Rows claimed per transaction: enough to spread one fsync over many rows, few enough that
#: the write lock is held for tens of milliseconds only (the receiver waits on it).
BATCH_ROWS = 64

#: Pending rows, and parked ones whose backoff has passed (``queue.INBOX.retried``), with this
#: attempt counted. A read, not an update: the batch's transaction holds the write lock, and
#: each row is written once, when it is settled (``done`` or ``park`` store ``attempts``).
CLAIM = f"""
SELECT id, body, body_encoding, content_type, facts, attempts + 1 AS attempts, received_at, attached_to
FROM inbox NOT INDEXED LEFT JOIN inbox_facts ON inbox_id = id
WHERE {due(INBOX)} AND id > :after ORDER BY id LIMIT :batch
"""
#: NOT INDEXED: the claim walks the rowids up from ``after`` and stops at ``batch`` rows. Through
#: the status index SQLite would gather and sort every due row for each batch of 64: quadratic
#: on a backlog. ``FIRST_DUE`` (by that index, once per run) says where the walk starts.
FIRST_DUE = f"SELECT MIN(id) FROM inbox WHERE {due(INBOX)}"


class Unmapped(Exception):
    """The product has no [products.<code>] section (yet)."""


class NotApplicable(Exception):
    """A valid postback that cannot be applied as it is (e.g. no period known)."""


def period_of(product: ProductConfig, pb: Postback) -> tuple[int, int]:
    """(days, calendar months) one payment buys: the plan override, the product, then the
    plan's periodicity (Mensal = 1 month, Semanal = 7 days)."""
    plan = product.plans.get(pb.plan_ref or "") or product.plans.get(pb.plan_code or "")
    for days, months in ((plan and plan.days, plan and plan.months), (product.days, product.months),
                         (None, pb.period_months), (pb.period_days, None)):
        if days or months:
            return days or 0, months or 0
    raise NotApplicable(f"no period for product {product.code}: set days or period in [products.{product.code}]")


def apply_inbox(ledger: Ledger, cfg: Config, now: datetime, limit: int | None = None) -> dict[str, int]:
    counts = {InboxStatus.APPLIED: 0, InboxStatus.UNMAPPED: 0, InboxStatus.FAILED: 0, InboxStatus.HELD: 0}
    first = ledger.conn.execute(FIRST_DUE, {"now": iso(now), "max_attempts": cfg.policy.max_attempts}).fetchone()[0]
    if first is None:
        return counts
    # Each row's savepoint keeps a copy of every page it changes (~20 in a 100k shop), for a
    # rollback to it. In memory that is a copy; in the default temporary file, two write()
    # calls per page, ~90 kB per postback (nothing a crash needs: the WAL keeps commits whole).
    ledger.conn.execute("PRAGMA temp_store = MEMORY")
    try:
        return _apply_from(ledger, cfg, now, limit, counts, first)
    finally:
        ledger.conn.execute("PRAGMA temp_store = DEFAULT")


def _apply_from(ledger: Ledger, cfg: Config, now: datetime, limit: int | None, counts: dict[str, int],
                first: int) -> dict[str, int]:
    after = first - 1  # each row is tried at most once per run
    single_until = 0  # after a failed batch, its rows go again one per transaction
    while limit is None or sum(counts.values()) < limit:
        size = 1 if after < single_until else BATCH_ROWS
        if limit is not None:
            size = min(size, limit - sum(counts.values()))
        claimed: list[int] = []
        try:
            with ledger.tx() as conn:
                rows = conn.execute(CLAIM, {"now": iso(now), "after": after, "batch": size,
                                            "max_attempts": cfg.policy.max_attempts}).fetchall()
                claimed = [row["id"] for row in rows]
                outcomes = [_apply_row(conn, ledger, cfg, row, now) for row in rows]
        except Exception as exc:
            # Only an error that ends the whole transaction gets here (disk, I/O, a lost
            # savepoint): nothing of the batch was committed, every row is still pending.
            if not claimed:
                raise
            if len(claimed) > 1:
                single_until = claimed[-1]
                continue
            log.exception("inbox %s could not be applied", claimed[0])
            _settle(ledger, claimed[0], InboxStatus.FAILED, f"{type(exc).__name__}: {exc}", now)
            counts[InboxStatus.FAILED] += 1
            after = claimed[0]
            continue
        if not rows:
            break
        after = claimed[-1]
        for outcome in outcomes:
            counts[outcome] += 1
    return counts


def _apply_row(conn: sqlite3.Connection, ledger: Ledger, cfg: Config, row: sqlite3.Row, now: datetime) -> str:
    """Apply one claimed row inside its own savepoint; returns applied | unmapped | failed.

    On failure the row's effects are rolled back to the savepoint and the row is parked with
    its reason, in the caller's transaction. Raises only when the transaction itself is gone.
    """
    conn.execute("SAVEPOINT apply_row")
    pb = None
    try:
        # what the writer's parser made of the body as it was stored (inbox_facts, deleted by a
        # trigger once the row is settled), else the body parsed now
        pb = from_facts(row["facts"]) or parse(raw_body(row["body"], row["body_encoding"]), row["content_type"])[1]
        outcome = apply_postback(conn, ledger, cfg, pb, now, inbox_id=row["id"],
                                 received_at=row["received_at"], attached_to=row["attached_to"])
        done(conn, INBOX, row["id"], InboxStatus.APPLIED, outcome, applied_at=iso(now), attempts=row["attempts"])
    except (Unmapped, NotApplicable, Held) as exc:
        status = {Unmapped: InboxStatus.UNMAPPED, Held: InboxStatus.HELD}.get(type(exc), InboxStatus.FAILED)
        reason = str(exc).replace("attach <id>", f"attach {row['id']}")
    except Exception as exc:  # a bug or a corrupt row: park it with the reason, go on
        log.exception("inbox %s could not be applied", row["id"])
        status, reason = InboxStatus.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        conn.execute("RELEASE apply_row")
        return InboxStatus.APPLIED
    conn.execute("ROLLBACK TO apply_row")
    park(conn, INBOX, row["id"], status, reason, attempts=row["attempts"], now=now)
    # with the sale and the buyer, so `logs --email` shows support why nothing happened
    ledger.audit(f"inbox.{status}", actor="process", reason=reason, inbox_id=row["id"],
                 sale_code=pb.sale_code if pb else None, buyer_email=pb.buyer_email if pb else None)
    conn.execute("RELEASE apply_row")
    return status


def _settle(ledger: Ledger, inbox_id: int, status: str, reason: str, now: datetime) -> None:
    with ledger.tx() as conn:
        attempts = conn.execute("SELECT attempts + 1 FROM inbox WHERE id = :id", {"id": inbox_id}).fetchone()[0]
        park(conn, INBOX, inbox_id, status, reason, attempts=attempts, now=now)
        ledger.audit(f"inbox.{status}", actor="process", reason=reason, inbox_id=inbox_id)


def subscription_key(pb: Postback) -> str | None:
    """``sub:<assinatura>`` or ``sale:<venda>``; an order bump's extra item gets ``+<product>``."""
    item = f"+{pb.line_item}" if pb.line_item else ""
    if pb.subscription_code:
        return f"sub:{pb.subscription_code}{item}"
    if pb.sale_code:
        return f"sale:{pb.sale_code}{item}"
    return None


def apply_postback(conn: sqlite3.Connection, ledger: Ledger, cfg: Config, pb: Postback, now: datetime,
                   inbox_id: int | None = None, received_at: str | None = None,
                   attached_to: str | None = None) -> str:
    """Apply one classified postback and each mapped extra item of its sale; returns a one-line
    outcome for the inbox row. Unmapped extra items are audited and named in the outcome."""
    product = cfg.products.get(pb.product_code or "")
    if product is None:
        raise Unmapped(f"unmapped product {pb.product_code}: add [products.{pb.product_code}] and run "
                       "`iptvsync inbox retry`")
    outcomes = [_apply_one(conn, ledger, cfg, pb, product, now, received_at, attached_to)]
    for item in pb.items:
        if item.main or item.product_code == pb.product_code:
            continue  # the main item is produto[…], applied above
        extra = cfg.products.get(item.product_code)
        if extra is None:
            ledger.audit("order_bump.unmapped", actor="process", inbox_id=inbox_id, sale_code=pb.sale_code,
                         buyer_email=pb.buyer_email, product_code=item.product_code, name=item.name)
            outcomes.append(f"item {item.product_code} unmapped: recorded, not provisioned")
            continue
        bump = replace(pb, product_code=item.product_code, product_name=item.name, amount=item.amount,
                       line_item=item.product_code)
        outcomes.append(f"item {item.product_code}: "
                        + _apply_one(conn, ledger, cfg, bump, extra, now, received_at, None))
    return "; ".join(outcomes)


def _apply_one(conn: sqlite3.Connection, ledger: Ledger, cfg: Config, pb: Postback, product: ProductConfig,
               now: datetime, received_at: str | None, attached_to: str | None) -> str:
    natural = subscription_key(pb)
    key = attached_to or aliased(conn, natural) or natural
    if key is None:
        raise NotApplicable("postback has neither a sale code nor a subscription code")
    if attached_to is None and key == natural:
        hold_if_second_line(conn, pb, key)
        hold_if_unknown_renewal(conn, pb, key)
    days, months = period_of(product, pb)
    sub = _subscription(conn, key, pb, product, now)
    if "whatsapp" in cfg.channels(product.code) and sub["buyer_phone"] is None:
        sub = remember_phone(conn, sub, pb.buyer_phone, cfg.whatsapp.default_region)
    who = {"subscription_id": sub["id"], "sale_code": pb.sale_code, "buyer_email": sub["buyer_email"]}
    if attached_to and natural and natural.startswith("sub:") and natural != key and conn.execute(
            "INSERT OR IGNORE INTO subscription_aliases (key, subscription_id, created_at) VALUES (?, ?, ?)",
            (natural, sub["id"], iso(now))).rowcount:
        ledger.audit("subscription.aliased", actor="process", alias=natural, key=key, **who)
        if not sub["recurring"]:  # an assinatura renews it from now on: grace, no reminders
            conn.execute("UPDATE subscriptions SET recurring = 1 WHERE id = ?", (sub["id"],))
            sub["recurring"] = 1
    if pb.sale_codes_differ:  # which one identifies the charge is UNCONFIRMED (docs/process.md)
        ledger.audit("postback.sale_codes_differ", actor="process", event=pb.event, venda_codigo=pb.sale_code,
                     codigo_venda=pb.codigo_venda, used="venda[codigo]", **who)

    charge_kind = pb.kind if pb.kind in KIND_TO_CHARGE else None
    if charge_kind is None and pb.sale_paid and pb.paid_at and pb.sale_code:
        # venda[status] Finalizada/Completa with a payment date: this charge was paid, whichever
        # event carried it (e.g. a renewal seen only as 101 "Assinatura - Ativa").
        charge_kind = "complete" if pb.sale_completed else "approved"
    charged = None
    if charge_kind is not None:
        if not pb.sale_code:
            raise NotApplicable(f"event {pb.event} without a sale code")
        paid_at, paid_from = _paid_at(pb, charge_kind, received_at)
        before, after = _upsert_charge(conn, sub["id"], pb, charge_kind, paid_at, days, months, now)
        _, want = recompute(conn, sub["id"], cfg, now, current=sub)  # the row _subscription just read
        extra = {"paid_at_from": paid_from} if paid_from else {}
        # paid_until as `subs show` has it (no grace); access_until is when the line stops (with grace)
        ledger.audit(f"charge.{after}", actor="process", event=pb.event, parcela=pb.parcela,
                     previous=before, paid_until=iso(want.paid_until), access_until=want.access_until,
                     enabled=want.enabled,
                     **extra, **who)
        _queue_charge_emails(conn, cfg, sub, pb, before, after, want, now)
        charged = f"charge {_charge_key(pb)}: {before or 'new'} -> {after}"
        if pb.kind in KIND_TO_CHARGE or pb.kind == SALE_PAID:
            return charged

    if pb.kind == "sub_cancelled":
        mode = cfg.policy.on_subscription_cancelled
        conn.execute("UPDATE subscriptions SET cancelled_at = COALESCE(cancelled_at, :now),"
                     " cancel_mode = COALESCE(cancel_mode, :mode) WHERE id = :id",
                     {"now": iso(now), "mode": mode, "id": sub["id"]})
        before, want = recompute(conn, sub["id"], cfg, now)
        ledger.audit("subscription.cancelled", actor="process", mode=mode, enabled=want.enabled, **who)
        queue_cancellation(conn, before, want, now)
        return _joined(charged, f"subscription cancelled ({mode})")

    if pb.kind == "sub_overdue":
        _, want = recompute(conn, sub["id"], cfg, now)
        ledger.audit("subscription.overdue", actor="process", access_until=want.access_until, **who)
        if want.enabled:
            queue(conn, subscription_id=sub["id"], kind="payment_failed", cycle=f"overdue:{pb.parcela or ''}",
                  to_addr=sub["buyer_email"], now=now, context={"access_until": iso(want.access_until)})
        return _joined(charged, "subscription overdue: access runs to paid_until + grace")

    # sub_active / waiting-only events: record, nothing to change
    recompute(conn, sub["id"], cfg, now, current=None if charged else sub)
    ledger.audit(f"subscription.{pb.kind}", actor="process", event=pb.event, **who)
    return _joined(charged, f"recorded {pb.kind}")


def _subscription(conn: sqlite3.Connection, key: str, pb: Postback, product: ProductConfig, now: datetime) -> dict:
    """The subscription ``key`` names, created on its first postback. A renewal only reads it
    (a write would rewrite the row and its indexes for nothing); a buyer's email or name it
    lacks is filled in, never replaced."""
    row = conn.execute("SELECT * FROM subscriptions WHERE key = :key", {"key": key}).fetchone()
    if row is None:
        row = conn.execute(
            "INSERT INTO subscriptions (key, product_code, product_name, plan_code, panel, buyer_email,"
            " buyer_name, recurring, created_at, updated_at) VALUES (:key, :product, :pname, :plan, :panel,"
            " :email, :name, :recurring, :now, :now) RETURNING *",
            {"key": key, "product": product.code, "pname": product.name or pb.product_name,
             "plan": pb.plan_ref or pb.plan_code, "panel": product.panel, "email": pb.buyer_email,
             "name": pb.buyer_name, "recurring": int(is_recurring(pb)),
             "now": iso(now)}).fetchone()
    elif (row["buyer_email"] is None and pb.buyer_email) or (row["buyer_name"] is None and pb.buyer_name):
        row = conn.execute(
            "UPDATE subscriptions SET buyer_email = COALESCE(buyer_email, :email),"
            " buyer_name = COALESCE(buyer_name, :name) WHERE id = :id RETURNING *",
            {"email": pb.buyer_email, "name": pb.buyer_name, "id": row["id"]}).fetchone()
    return dict(row)  # the row as it is now: recompute needs no second read


def is_recurring(pb: Postback) -> bool:
    """A subscription: ``assinatura`` names one. Monetizze's current samples carry assinatura
    (código, status, parcela) but no plano[periodicidade] (ExemploPOSTCallback PR #39), so the
    plan's periodicity alone cannot decide."""
    return bool(pb.subscription_code)


def _joined(*parts: str | None) -> str:
    return "; ".join(p for p in parts if p)


def queue_cancellation(conn, before: dict, want, now: datetime) -> bool:
    """The email a cancellation owes the buyer, from what it did to the line.

    Access runs on: "cancellation" (access until ...). Access ended by this cancellation:
    "access_ended". Access was already off (refunded, expired, disputed, suspended): the buyer
    was told then, so nothing.
    """
    if want.enabled:
        return queue(conn, subscription_id=before["id"], kind="cancellation", cycle="cancel",
                     to_addr=before["buyer_email"], now=now, context={"access_until": iso(want.access_until)})
    if before["desired_enabled"]:
        return queue(conn, subscription_id=before["id"], kind="access_ended", cycle="cancel",
                     to_addr=before["buyer_email"], now=now, context={"access_until": iso(now)})
    return False


def _charge_key(pb: Postback) -> str:
    item = f"+{pb.line_item}" if pb.line_item else ""
    return f"{pb.sale_code}:{pb.parcela if pb.parcela is not None else ''}{item}"


def _paid_at(pb: Postback, kind: str, received_at: str | None) -> tuple[str | None, str | None]:
    """When the charge was paid, and where that came from when not venda[dataFinalizada].

    A paid sale whose dataFinalizada is empty or 0000-00-00 still pays: from dataInicio, else
    from when the postback was received."""
    if KIND_TO_CHARGE[kind] not in PAYING and KIND_TO_CHARGE[kind] != "refunded":
        return None, None
    if pb.paid_at:
        return pb.paid_at, None
    if pb.started_at:
        return pb.started_at, "dataInicio (no dataFinalizada)"
    return received_at, "received time (no dataFinalizada nor dataInicio)"


def _upsert_charge(conn, sub_id: int, pb: Postback, kind: str, paid_at: str | None, days: int, months: int,
                   now: datetime) -> tuple[str | None, str]:
    """Move the charge up its precedence; never down. Returns the status before and after."""
    status = KIND_TO_CHARGE[kind]
    row = conn.execute("SELECT status FROM charges WHERE charge_key = :key", {"key": _charge_key(pb)}).fetchone()
    if row and row[0] == "blocked" and status in REINSTATING:
        status = "reinstated"  # the dispute ended in the shop's favour (model.py)
    after = conn.execute(
        "INSERT INTO charges (charge_key, sale_code, parcela, subscription_id, status, status_rank, paid_at,"
        " days, months, amount, updated_at) VALUES (:key, :sale, :parcela, :sub, :status, :rank, :paid_at, :days,"
        " :months, :amount, :now) ON CONFLICT (charge_key) DO UPDATE SET"
        " status = CASE WHEN excluded.status_rank > status_rank THEN excluded.status ELSE status END,"
        " status_rank = MAX(status_rank, excluded.status_rank),"
        " paid_at = CASE WHEN paid_at IS NULL THEN excluded.paid_at WHEN excluded.paid_at IS NULL THEN paid_at"
        "           ELSE MIN(paid_at, excluded.paid_at) END,"
        " updated_at = excluded.updated_at RETURNING status",
        {"key": _charge_key(pb), "sale": pb.sale_code, "parcela": pb.parcela, "sub": sub_id,
         "status": status, "rank": CHARGE_RANK[status], "paid_at": paid_at, "days": days, "months": months,
         "amount": pb.amount, "now": iso(now)}).fetchone()[0]
    return (row[0] if row else None), after


def _queue_charge_emails(conn, cfg: Config, sub: dict, pb: Postback, before: str | None, after: str,
                         want, now: datetime) -> None:
    was_paying = before in ("paid", "complete", "reinstated")
    is_paying = after in ("paid", "complete")
    email = sub["buyer_email"]
    if after == "reinstated" and before == "blocked":
        if want.enabled:  # the buyer was told of the suspension: now of the line back
            queue(conn, subscription_id=sub["id"], kind="resumed", cycle=_charge_key(pb), to_addr=email, now=now,
                  context={"access_until": iso(want.access_until)})
    elif is_paying and not was_paying:
        first = conn.execute("SELECT COUNT(*) FROM outbox WHERE subscription_id = :sub AND kind = 'activation'",
                             {"sub": sub["id"]}).fetchone()[0] == 0
        if first:
            queue(conn, subscription_id=sub["id"], kind="activation", cycle="1", to_addr=email, now=now)
        else:
            queue(conn, subscription_id=sub["id"], kind="renewal", cycle=_charge_key(pb), to_addr=email, now=now)
    elif was_paying and after == "refunded" and not want.enabled:
        queue(conn, subscription_id=sub["id"], kind="refund", cycle=_charge_key(pb), to_addr=email, now=now,
              context={"access_until": iso(now)})
