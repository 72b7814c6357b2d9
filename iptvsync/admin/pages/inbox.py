"""Postbacks: the inbox with outcomes and filters, one postback with its redacted body, and
retry / replay / attach.

Contexts: ``inbox.html``: ``rows``, ``q``, ``status``, ``statuses``, ``next_before``;
``postback.html``: ``row``, ``body``, ``error``, ``attachable``.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, g, redirect, request, url_for

from ...errors import UsageError
from ...ops import console, inbox
from ...ops import search as finder
from ..auth import actor
from ..render import page
from ..roles import requires
from . import cursor

bp = Blueprint("inbox", __name__, url_prefix="/postbacks")
STATUSES = tuple(str(s) for s in console.INBOX_STATUSES)


@bp.get("")
@requires("view")
def listing():
    q = request.args.get("q", "")[:200]
    status = request.args.get("status") or None
    try:
        rows = finder.postbacks(g.ledger, status=status, q=q, before=request.args.get("before", type=cursor))
    except UsageError:
        abort(400)
    return page("inbox.html", rows=rows, q=q, status=status or "", statuses=STATUSES,
                next_before=rows[-1]["id"] if len(rows) == finder.PAGE else None)


def _show(inbox_id: int, error: str | None = None, status: int = 200):
    try:
        row = inbox.show(g.ledger, current_app.config["IPTVSYNC"], inbox_id)
    except UsageError:
        abort(404)
    body = row.pop("body")
    if not isinstance(body, str):
        body = json.dumps(body, indent=2, ensure_ascii=False)
    return page("postback.html", row=row, body=body, error=error, attachable=row["status"] == console.HELD), status


@bp.get("/<int:inbox_id>")
@requires("view")
def show(inbox_id: int):
    return _show(inbox_id)


def _reason() -> str | None:
    return request.form.get("reason", "").strip()[:500] or None


@bp.post("/<int:inbox_id>/retry")
@requires("inbox.retry")
def retry(inbox_id: int):
    try:
        inbox.retry(g.ledger, [inbox_id], actor=actor(_reason()), only_stuck=True)
    except UsageError:
        return _show(inbox_id, error="bad_request", status=400)
    return redirect(url_for("inbox.show", inbox_id=inbox_id), 303)


@bp.post("/<int:inbox_id>/replay")
@requires("inbox.replay")
def replay(inbox_id: int):
    try:
        inbox.replay(g.ledger, [inbox_id], actor=actor(_reason()))
    except UsageError:
        abort(404)
    return redirect(url_for("inbox.show", inbox_id=inbox_id), 303)


@bp.post("/<int:inbox_id>/attach")
@requires("inbox.attach")
def attach(inbox_id: int):
    target = request.form.get("subscription", "").strip()[:200]
    try:
        inbox.attach(g.ledger, inbox_id, target, actor=actor(_reason()))
    except inbox.AttachError:
        return _show(inbox_id, error="bad_request", status=400)
    return redirect(url_for("inbox.show", inbox_id=inbox_id), 303)
