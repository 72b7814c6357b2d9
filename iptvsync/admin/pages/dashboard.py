"""Painel: what sold today / 7 / 30 days, what failed or waits on a human, panels, receiver.

Context: ``p`` (``ops.dashboard.painel``), ``windows``, ``figures``, ``checks`` (the panels' live
check, ``ops.doctor.check_panels``: key, credits, a buyer's login; only when asked, by a POST,
since it calls every panel).
"""

from __future__ import annotations

from flask import Blueprint, current_app, g

from ...ops import dashboard, doctor
from ..render import page
from ..roles import requires

bp = Blueprint("dashboard", __name__)
FIGURES = ("sales", "activations", "renewals", "cancellations", "refunds")


@bp.get("/")
@requires("view")
def painel():
    return _painel(None)


@bp.post("/paineis")
@requires("view")
def check_panels():
    return _painel(doctor.check_panels(current_app.config["IPTVSYNC"]))


def _painel(checks: list[dict] | None):
    p = dashboard.painel(g.ledger, current_app.config["IPTVSYNC"])
    return page("painel.html", p=p, windows=tuple(dashboard.WINDOWS), figures=FIGURES, checks=checks)
