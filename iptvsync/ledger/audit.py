"""Reading the audit trail (writing it is ``Ledger.audit``)."""

from __future__ import annotations

from datetime import datetime

from ..clock import iso
from .db import Ledger
from .migrations import AUDIT_EMAIL_ROWS


def query_audit(ledger: Ledger, *, since: datetime | None = None, sale: str | None = None,
                email: str | None = None, subscription: int | None = None, action: str | None = None,
                after_id: int = 0, before_id: int | None = None, limit: int = 200) -> list[dict]:
    where, params = ["id > :after"], {"after": after_id, "limit": limit}
    if before_id is not None:  # the console pages back by key
        where.append("id < :before")
        params["before"] = before_id
    if since:
        # the first row at or after ``since`` by the audit_at index, then the rowid range from it
        first = ledger.one("SELECT MIN(id) AS id FROM audit INDEXED BY audit_at WHERE at >= :since",
                           {"since": iso(since)})["id"]
        if first is None:
            return []
        where.append("at >= :since")
        params.update(since=iso(since), after=max(after_id, first - 1))
    if sale:
        where.append("(sale_code = :sale OR subscription_id IN"
                     " (SELECT subscription_id FROM charges WHERE sale_code = :sale))")
        params["sale"] = sale
    if email:
        # Support asks by email: everything about that buyer's subscriptions, and the rows about
        # none (or an attached postback) by the partial index over exactly those (m012)
        where.append(f"((({AUDIT_EMAIL_ROWS}) AND buyer_email = :email) OR subscription_id IN"
                     " (SELECT id FROM subscriptions WHERE buyer_email = :email))")
        params["email"] = email.strip().lower()
    if subscription:
        where.append("subscription_id = :sub")
        params["sub"] = subscription
    sql = ("SELECT id, at, actor, action, subscription_id, sale_code, buyer_email, detail FROM audit"
           " WHERE {} ORDER BY id DESC LIMIT :limit")
    if not action:
        return list(reversed(ledger.query(sql.format(" AND ".join(where)), params)))
    # An action prefix ("panel") names a few actions ("panel.created", "panel.updated" …): each is
    # read newest first through the audit_action index (action, id), and the newest ``limit`` kept.
    rows: list[dict] = []
    for name in actions_with_prefix(ledger, action.lower()):
        rows += ledger.query(sql.format(" AND ".join([*where, "action = :action"])), {**params, "action": name})
    rows.sort(key=lambda row: row["id"])
    return rows[-limit:] if limit > 0 else rows


def actions_with_prefix(ledger: Ledger, prefix: str) -> list[str]:
    """The distinct actions starting with ``prefix``, one index step each (no scan)."""
    names, name = [], ledger.one("SELECT MIN(action) AS a FROM audit WHERE action >= :p", {"p": prefix})["a"]
    while name is not None and name.startswith(prefix):
        names.append(name)
        name = ledger.one("SELECT MIN(action) AS a FROM audit WHERE action > :a", {"a": name})["a"]
    return names
