"""What ``simulate`` reads from the ledger to act on an existing subscription as Monetizze would.

Monetizze's cancellation, refund and dispute postbacks carry the sale code and parcela of a charge
that exists (exemplo.php: ``venda[codigo]``, ``assinatura[parcela]``); a fresh sale code there
would be a new paid charge (a cancellation comes with ``venda[status]`` Completa). So these
simulations use the subscription's real last charge, its product and its buyer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..errors import UsageError
from ..ledger.db import Ledger
from .subs import find

#: events that concern a charge already made
ON_EXISTING = ("cancel", "refund", "dispute")


@dataclass(frozen=True)
class Target:
    subscription: str | None  # Monetizze's subscription code (None: a one-off sale)
    sale: str | None
    parcela: int
    product: str
    email: str | None


def target(cfg: Config, kind: str, *, subscription: str | None, sale: str | None,
           parcela: int | None) -> Target | None:
    """The charge a ``kind`` simulation acts on; None when nothing in the ledger is involved."""
    if kind not in ON_EXISTING and not (kind == "renewal" and subscription):
        return None
    if subscription is None and sale is None:
        raise UsageError(f"simulate {kind} acts on an existing charge: pass --subscription CODE (its last charge"
                         " is used; `iptvsync subs list` shows them) or --sale CODE")
    ledger = Ledger(cfg.ledger_path)
    try:
        if subscription is not None:
            sub = find(ledger, subscription)  # NotFound: "no subscription 'X'", exit 2
        else:  # a sale's charge names its subscription
            sub = ledger.one("SELECT s.* FROM subscriptions s JOIN charges c ON c.subscription_id = s.id"
                             " WHERE c.sale_code = ? LIMIT 1", (sale,))
            if sub is None:
                return None  # a sale the ledger never saw: posted as given
        last = ledger.one("SELECT sale_code, parcela FROM charges WHERE subscription_id = :id"
                          " AND (:sale IS NULL OR sale_code = :sale)"
                          " ORDER BY COALESCE(parcela, 0) DESC, paid_at DESC LIMIT 1",
                          {"id": sub["id"], "sale": None if kind == "renewal" else sale})
    finally:
        ledger.close()
    code = sub["key"].split(":", 1)[1] if sub["key"].startswith("sub:") else None
    if kind == "renewal":  # a new charge: the next parcela, a fresh sale code
        return Target(code, sale, parcela or ((last or {}).get("parcela") or 0) + 1, sub["product_code"],
                      sub["buyer_email"])
    if last is None and sale is None:
        raise UsageError(f"subscription {sub['id']} has no charge to {kind}: simulate a purchase first")
    return Target(code, sale or last["sale_code"], parcela or (last or {}).get("parcela") or 1,
                  sub["product_code"], sub["buyer_email"])
