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
from datetime import datetime

from ..clock import iso
from ..config import Config, ProductConfig
from ..ledger.db import Ledger
from ..ledger.outbox import queue
from ..ledger.queue import INBOX, InboxStatus, done, due, park
from ..monetizze.postback import Postback, parse
from .derive import recompute
from .model import CHARGE_RANK, KIND_TO_CHARGE, PAYING

log = logging.getLogger("iptvsync.apply")

#: Rows claimed per transaction: enough to spread one fsync over many rows, few enough that
#: the write lock is held for tens of milliseconds only (the receiver waits on it).
BATCH_ROWS = 64

#: Pending rows, and parked ones whose backoff has passed (``queue.INBOX.retried``).
CLAIM = f"""
UPDATE inbox SET attempts = attempts + 1
WHERE id IN (SELECT id FROM inbox WHERE {due(INBOX)} AND id > :after ORDER BY id LIMIT :batch)
RETURNING id, body, content_type, attempts
"""


class Unmapped(Exception):
    """The product has no [products.<code>] section (yet)."""


class NotApplicable(Exception):
    """A valid postback that cannot be applied as it is (e.g. no period known)."""


def period_days(product: ProductConfig, pb: Postback) -> int:
    """Days one payment of this sale buys: the plan override, the product, then the plan's periodicity."""
    plan = product.plans.get(pb.plan_ref or "") or product.plans.get(pb.plan_code or "")
    days = (plan and plan.days) or product.days or pb.period_days
    if not days:
        raise NotApplicable(f"no period for product {product.code}: set days in [products.{product.code}]")
    return days


def apply_inbox(ledger: Ledger, cfg: Config, now: datetime, limit: int | None = None) -> dict[str, int]:
    counts = {InboxStatus.APPLIED: 0, InboxStatus.UNMAPPED: 0, InboxStatus.FAILED: 0}
    after = 0  # each row is tried at most once per run
    single_until = 0  # after a failed batch, its rows go again one per transaction
    while limit is None or sum(counts.values()) < limit:
        size = 1 if after < single_until else BATCH_ROWS
        if limit is not None:
            size = min(size, limit - sum(counts.values()))
        claimed: list[int] = []
        try:
            with ledger.tx() as conn:
                rows = sorted(conn.execute(CLAIM, {"now": iso(now), "after": after, "batch": size,
                                                   "max_attempts": cfg.policy.max_attempts}),
                              key=lambda r: r["id"])
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
        _, pb = parse(row["body"], row["content_type"])
        outcome = apply_postback(conn, ledger, cfg, pb, now, inbox_id=row["id"])
        done(conn, INBOX, row["id"], InboxStatus.APPLIED, outcome, applied_at=iso(now))
    except (Unmapped, NotApplicable) as exc:
        status, reason = (InboxStatus.UNMAPPED if isinstance(exc, Unmapped) else InboxStatus.FAILED), str(exc)
    except Exception as exc:  # a bug or a corrupt row: park it with the reason, go on
        log.exception("inbox %s could not be applied", row["id"])
        status, reason = InboxStatus.FAILED, f"{type(exc).__name__}: {exc}"
    else:
        conn.execute("RELEASE apply_row")
        return InboxStatus.APPLIED
    conn.execute("ROLLBACK TO apply_row")
    # attempts was counted by the claim, which the rollback to the savepoint keeps
    park(conn, INBOX, row["id"], status, reason, attempts=row["attempts"], now=now)
    # with the sale and the buyer, so `logs --email` shows support why nothing happened
    ledger.audit(f"inbox.{status}", actor="process", reason=reason, inbox_id=row["id"],
                 sale_code=pb.sale_code if pb else None, buyer_email=pb.buyer_email if pb else None)
    conn.execute("RELEASE apply_row")
    return status


def _settle(ledger: Ledger, inbox_id: int, status: str, reason: str, now: datetime) -> None:
    with ledger.tx() as conn:
        attempts = conn.execute("UPDATE inbox SET attempts = attempts + 1 WHERE id = :id RETURNING attempts",
                                {"id": inbox_id}).fetchone()[0]
        park(conn, INBOX, inbox_id, status, reason, attempts=attempts, now=now)
        ledger.audit(f"inbox.{status}", actor="process", reason=reason, inbox_id=inbox_id)


def subscription_key(pb: Postback) -> str | None:
    if pb.subscription_code:
        return f"sub:{pb.subscription_code}"
    if pb.sale_code:
        return f"sale:{pb.sale_code}"
    return None


def apply_postback(conn: sqlite3.Connection, ledger: Ledger, cfg: Config, pb: Postback, now: datetime,
                   inbox_id: int | None = None) -> str:
    """Apply one classified postback; returns a one-line outcome for the inbox row."""
    product = cfg.products.get(pb.product_code or "")
    if product is None:
        raise Unmapped(f"unmapped product {pb.product_code}: add [products.{pb.product_code}] and run "
                       "`iptvsync inbox retry`")
    key = subscription_key(pb)
    if key is None:
        raise NotApplicable("postback has neither a sale code nor a subscription code")
    days = period_days(product, pb)
    sub = dict(conn.execute(
        "INSERT INTO subscriptions (key, product_code, product_name, plan_code, panel, buyer_email,"
        " buyer_name, recurring, created_at, updated_at) VALUES (:key, :product, :pname, :plan, :panel,"
        " :email, :name, :recurring, :now, :now) ON CONFLICT (key) DO UPDATE SET"
        " buyer_email = COALESCE(subscriptions.buyer_email, excluded.buyer_email),"
        " buyer_name = COALESCE(subscriptions.buyer_name, excluded.buyer_name) RETURNING *",
        {"key": key, "product": product.code, "pname": product.name or pb.product_name,
         "plan": pb.plan_ref or pb.plan_code, "panel": product.panel, "email": pb.buyer_email,
         "name": pb.buyer_name, "recurring": int(bool(pb.subscription_code and pb.periodicity)),
         "now": iso(now)}).fetchone())  # the row as it is now: no second read
    who = {"subscription_id": sub["id"], "sale_code": pb.sale_code, "buyer_email": sub["buyer_email"]}

    if pb.kind in KIND_TO_CHARGE:
        if not pb.sale_code:
            raise NotApplicable(f"event {pb.event} without a sale code")
        before, after = _upsert_charge(conn, sub["id"], pb, days, now)
        _, want = recompute(conn, sub["id"], cfg, now)
        ledger.audit(f"charge.{after}", actor="process", event=pb.event, parcela=pb.parcela,
                     previous=before, paid_until=want.access_until, enabled=want.enabled, **who)
        _queue_charge_emails(conn, cfg, sub, pb, before, after, want, now)
        return f"charge {_charge_key(pb)}: {before or 'new'} -> {after}"

    if pb.kind == "sub_cancelled":
        mode = cfg.policy.on_subscription_cancelled
        conn.execute("UPDATE subscriptions SET cancelled_at = COALESCE(cancelled_at, :now),"
                     " cancel_mode = COALESCE(cancel_mode, :mode) WHERE id = :id",
                     {"now": iso(now), "mode": mode, "id": sub["id"]})
        _, want = recompute(conn, sub["id"], cfg, now)
        ledger.audit("subscription.cancelled", actor="process", mode=mode, enabled=want.enabled, **who)
        queue(conn, subscription_id=sub["id"], kind="cancellation", cycle="cancel", to_addr=sub["buyer_email"],
              now=now, context={"access_until": iso(want.access_until) if want.enabled else iso(now)})
        return f"subscription cancelled ({mode})"

    if pb.kind == "sub_overdue":
        _, want = recompute(conn, sub["id"], cfg, now)
        ledger.audit("subscription.overdue", actor="process", access_until=want.access_until, **who)
        if want.enabled:
            queue(conn, subscription_id=sub["id"], kind="payment_failed", cycle=f"overdue:{pb.parcela or ''}",
                  to_addr=sub["buyer_email"], now=now, context={"access_until": iso(want.access_until)})
        return "subscription overdue: access runs to paid_until + grace"

    recompute(conn, sub["id"], cfg, now)  # sub_active / waiting-only events: record, nothing to change
    ledger.audit(f"subscription.{pb.kind}", actor="process", event=pb.event, **who)
    return f"recorded {pb.kind}"


def _charge_key(pb: Postback) -> str:
    return f"{pb.sale_code}:{pb.parcela if pb.parcela is not None else ''}"


def _upsert_charge(conn, sub_id: int, pb: Postback, days: int, now: datetime) -> tuple[str | None, str]:
    """Move the charge up its precedence; never down. Returns the status before and after."""
    status = KIND_TO_CHARGE[pb.kind]
    row = conn.execute("SELECT status FROM charges WHERE charge_key = :key", {"key": _charge_key(pb)}).fetchone()
    paid_at = pb.paid_at if status in PAYING or status == "refunded" else None
    after = conn.execute(
        "INSERT INTO charges (charge_key, sale_code, parcela, subscription_id, status, status_rank, paid_at,"
        " days, amount, updated_at) VALUES (:key, :sale, :parcela, :sub, :status, :rank, :paid_at, :days,"
        " :amount, :now) ON CONFLICT (charge_key) DO UPDATE SET"
        " status = CASE WHEN excluded.status_rank > status_rank THEN excluded.status ELSE status END,"
        " status_rank = MAX(status_rank, excluded.status_rank),"
        " paid_at = CASE WHEN paid_at IS NULL THEN excluded.paid_at WHEN excluded.paid_at IS NULL THEN paid_at"
        "           ELSE MIN(paid_at, excluded.paid_at) END,"
        " updated_at = excluded.updated_at RETURNING status",
        {"key": _charge_key(pb), "sale": pb.sale_code, "parcela": pb.parcela, "sub": sub_id,
         "status": status, "rank": CHARGE_RANK[status], "paid_at": paid_at, "days": days,
         "amount": pb.amount, "now": iso(now)}).fetchone()[0]
    return (row[0] if row else None), after


def _queue_charge_emails(conn, cfg: Config, sub: dict, pb: Postback, before: str | None, after: str,
                         want, now: datetime) -> None:
    was_paying = before in ("paid", "complete")
    is_paying = after in ("paid", "complete")
    email = sub["buyer_email"]
    if is_paying and not was_paying:
        first = conn.execute("SELECT COUNT(*) FROM outbox WHERE subscription_id = :sub AND kind = 'activation'",
                             {"sub": sub["id"]}).fetchone()[0] == 0
        if first:
            queue(conn, subscription_id=sub["id"], kind="activation", cycle="1", to_addr=email, now=now)
        else:
            queue(conn, subscription_id=sub["id"], kind="renewal", cycle=_charge_key(pb), to_addr=email, now=now)
    elif was_paying and after == "refunded" and not want.enabled:
        queue(conn, subscription_id=sub["id"], kind="refund", cycle=_charge_key(pb), to_addr=email, now=now,
              context={"access_until": iso(now)})
