"""Finding things for the console: subscriptions by what a buyer says (email, name, sale code,
subscription code, line username), postbacks and audit rows by filter. Every list pages by key
(``before`` = the last id shown), never by OFFSET."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..errors import UsageError
from ..ledger.audit import query_audit
from ..ledger.db import Ledger
from ..ledger.inbox import SETTLED
from ..ledger.queue import InboxStatus
from .subs import LIST_COLUMNS, state_of

PAGE = 50


def subscriptions(ledger: Ledger, cfg: Config, *, q: str = "", state: str | None = None,
                  product: str | None = None, before: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
    """Newest first. ``q`` matches exactly an id, an email, a sale code, a Monetizze
    subscription code, a line username or a key, or a part of the buyer's name."""
    from ..clock import now
    from ..engine.model import STATES

    if state and state not in STATES:
        raise UsageError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    q = (q or "").strip()
    where, params = ["id < :before"], {"before": before or 2**62, "limit": limit if not state else 20 * limit}
    if product:
        where.append("product_code = :product")
        params["product"] = product
    if q:
        ids = _matching_ids(ledger, q)
        where.append(f"id IN ({', '.join(str(int(i)) for i in ids) or 'NULL'})")
    rows = ledger.query(f"SELECT {LIST_COLUMNS}, buyer_name FROM subscriptions WHERE {' AND '.join(where)}"
                        " ORDER BY id DESC LIMIT :limit", params)
    t, out = now(), []
    for row in rows:
        row["state"] = state_of(ledger, cfg, row["id"], t)
        if state is None or row["state"] == state:
            out.append(row)
        if len(out) == limit:
            break
    return out


def _matching_ids(ledger: Ledger, q: str) -> set[int]:
    """Each way a buyer names a subscription, each through its own index."""
    one = lambda sql, *p: {r[0] for r in ledger.conn.execute(sql, p)}  # noqa: E731
    ids = one("SELECT id FROM subscriptions WHERE key IN (?, ?, ?) OR username = ?",
              q, f"sub:{q}", f"sale:{q}", q)
    ids |= one("SELECT subscription_id FROM charges WHERE sale_code = ?", q)
    if q.isdigit():
        ids |= one("SELECT id FROM subscriptions WHERE id = ?", int(q))
    if "@" in q:
        ids |= one("SELECT id FROM subscriptions WHERE buyer_email = ?", q.lower())
    elif len(q) >= 3 and not ids:  # a part of a name: a scan, so only when nothing matched exactly
        like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        ids |= one("SELECT id FROM subscriptions WHERE buyer_name LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT 200",
                   f"%{like}%")
    return ids


def postbacks(ledger: Ledger, *, status: str | None = None, q: str = "", before: int | None = None,
              limit: int = PAGE) -> list[dict[str, Any]]:
    """The inbox newest first; ``q`` is a sale code or a buyer email."""
    if status and status not in set(InboxStatus):
        raise UsageError(f"status must be one of {', '.join(InboxStatus)}, got {status!r}")
    where, params = ["id < :before"], {"before": before or 2**62, "limit": limit}
    if status:
        # settled rows are most of the inbox: walk it newest first and keep theirs (``+status``:
        # not through the status index, which would sort a million rows by id); the queues'
        # statuses hold few rows, read through their index
        where.append("+status = :status" if status in SETTLED else "status = :status")
        params["status"] = status
    q = (q or "").strip()
    if q:
        where.append("buyer_email = :email" if "@" in q else "sale_code = :sale")
        params.update(email=q.lower(), sale=q)
    return ledger.query("SELECT id, received_at, event, kind, sale_code, parcela, product_code, buyer_email, status,"
                        f" reason, source FROM inbox WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit",
                        params)


def audit(ledger: Ledger, *, email: str | None = None, sale: str | None = None, subscription: int | None = None,
          action: str | None = None, before: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
    """The audit trail newest first, with the CLI's filters (``logs``)."""
    return list(reversed(query_audit(ledger, email=email or None, sale=sale or None, subscription=subscription,
                                     action=action or None, before_id=before, limit=limit)))


def chain_state(ledger: Ledger) -> dict[str, Any] | None:
    """What the last verification of the audit chain found (``audit verify`` stores it)."""
    return ledger.one("SELECT audit_id, rows, verified_at FROM audit_checkpoint WHERE id = 1")
