"""Operadores (owner only): who may log in, add one, remove one, end their sessions.

Context: ``operators.html``: ``rows``, ``roles``, ``languages``, ``error``.
"""

from __future__ import annotations

from flask import Blueprint, g, redirect, request, url_for

from ...errors import UsageError
from ...ops import operators
from ..auth import actor
from ..labels import error_label
from ..render import language, page
from ..roles import requires

bp = Blueprint("operators", __name__, url_prefix="/operadores")


def _listing(error: str | None = None, status: int = 200):
    return page("operators.html", rows=operators.list_operators(g.ledger), roles=operators.ROLES,
                languages=operators.LANGUAGES, error=error), status


@bp.get("")
@requires("operators")
def listing():
    return _listing()


@bp.post("/novo")
@requires("operators")
def add():
    f = request.form
    try:
        operators.add(g.ledger, f.get("name", "").strip()[:64], f.get("role", ""), f.get("password", "")[:1024],
                      language=f.get("language", "pt-BR"), actor=actor())
    except UsageError as exc:
        return _listing(error_label(language(), exc), 400)
    return redirect(url_for("operators.listing"), 303)


@bp.post("/<name>/remover")
@requires("operators")
def remove(name: str):
    try:
        operators.remove(g.ledger, name, actor=actor())
    except UsageError as exc:
        return _listing(error_label(language(), exc), 400)
    return redirect(url_for("operators.listing"), 303)


@bp.post("/<name>/encerrar")
@requires("operators")
def logout(name: str):
    try:
        operators.logout(g.ledger, name, actor=actor())
    except UsageError as exc:
        return _listing(error_label(language(), exc), 400)
    return redirect(url_for("operators.listing"), 303)
