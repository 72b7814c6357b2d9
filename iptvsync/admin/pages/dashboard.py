"""Painel: what sold today / 7 / 30 days, what failed or waits on a human, panels, receiver.

Context: ``p`` (``ops.dashboard.painel``), ``windows``, ``figures``.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g

from ...ops import dashboard
from ..render import page
from ..roles import requires

bp = Blueprint("dashboard", __name__)
FIGURES = ("sales", "activations", "renewals", "cancellations", "refunds")


@bp.get("/")
@requires("view")
def painel():
    p = dashboard.painel(g.ledger, current_app.config["IPTVSYNC"])
    return page("painel.html", p=p, windows=tuple(dashboard.WINDOWS), figures=FIGURES)
