"""Reading the audit trail (writing it is ``Ledger.audit``)."""

from __future__ import annotations

from datetime import datetime

from ..clock import iso
from .db import Ledger


def query_audit(ledger: Ledger, *, since: datetime | None = None, sale: str | None = None,
                email: str | None = None, subscription: int | None = None, action: str | None = None,
                after_id: int = 0, limit: int = 200) -> list[dict]:
    where, params = ["id > :after"], {"after": after_id, "limit": limit}
    if since:
        where.append("at >= :since")
        params["since"] = iso(since)
    if sale:
        where.append("(sale_code = :sale OR subscription_id IN"
                     " (SELECT subscription_id FROM charges WHERE sale_code = :sale))")
        params["sale"] = sale
    if email:
        # Support asks by email: include everything about that buyer's subscriptions.
        where.append("(buyer_email = :email OR subscription_id IN"
                     " (SELECT id FROM subscriptions WHERE buyer_email = :email))")
        params["email"] = email.strip().lower()
    if subscription:
        where.append("subscription_id = :sub")
        params["sub"] = subscription
    if action:
        where.append("action LIKE :action")
        params["action"] = action + "%"
    rows = ledger.query(f"SELECT id, at, actor, action, subscription_id, sale_code, buyer_email, detail"
                        f" FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit", params)
    return list(reversed(rows))
