"""Registro: the audit trail newest first with the CLI's filters, and the hash chain's state.

Context: ``audit.html``: ``rows``, ``filters``, ``chain``, ``broken``, ``next_before``.
"""

from __future__ import annotations

from flask import Blueprint, g, request

from ...ops import console
from ...ops import search as finder
from ..render import page
from ..roles import requires
from . import cursor

bp = Blueprint("audit", __name__, url_prefix="/registro")
FILTERS = ("email", "sale", "subscription", "action")


def _listing(broken: int | None = None, status: int = 200):
    filters = {k: request.values.get(k, "").strip()[:200] for k in FILTERS}
    rows = finder.audit(g.ledger, email=filters["email"] or None, sale=filters["sale"] or None,
                        subscription=int(filters["subscription"]) if filters["subscription"].isdigit() else None,
                        action=filters["action"] or None, before=request.args.get("before", type=cursor))
    return page("audit.html", rows=rows, filters=filters, chain=finder.chain_state(g.ledger), broken=broken,
                next_before=rows[-1]["id"] if len(rows) == finder.PAGE else None), status


@bp.get("")
@requires("view")
def listing():
    return _listing()


@bp.post("/verificar")
@requires("audit.verify")
def verify():
    _, broken = console.verify_chain(g.ledger)
    return _listing(broken)
