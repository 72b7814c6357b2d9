"""Assinaturas: search, a subscription's page with its timeline, and the actions (each behind
a confirmation page that asks for the reason the audit row keeps).

Contexts: ``subs.html``: ``rows``, ``q``, ``state``, ``product``, ``states``, ``products``,
``next_before``; ``sub.html``: ``sub``, ``events``, ``actions``, ``password``, ``ok``;
``confirm.html``: ``sub``, ``action``, ``kinds``, ``key``, ``error``; ``grant.html``: ``products``,
``error``, ``values`` (all of them in ``render.CONTEXTS``).
"""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, current_app, g, redirect, request, url_for

from ...errors import UsageError
from ...ops import search as finder
from ...ops import subs, timeline
from ..auth import actor
from ..render import page
from ..roles import allowed, requires
from . import cursor

bp = Blueprint("subs", __name__, url_prefix="/assinaturas")
ACTIONS = ("extend", "resend", "retry", "suspend", "resume", "cancel")
KINDS = ("activation", "renewal", "reminder", "cancellation", "refund")
REASON_MAX = 500


def _cfg():
    return current_app.config["IPTVSYNC"]


def _sub(sub_id: int) -> dict:
    try:
        return subs.show(g.ledger, _cfg(), str(sub_id))
    except UsageError:
        abort(404)


@bp.get("")
@requires("view")
def search():
    q = request.args.get("q", "")[:200]
    state = request.args.get("state") or None
    product = request.args.get("product") or None
    before = request.args.get("before", type=cursor)
    try:
        rows = finder.subscriptions(g.ledger, _cfg(), q=q, state=state, product=product, before=before)
    except UsageError:
        abort(400)
    return page("subs.html", rows=rows, q=q, state=state or "", product=product or "", states=subs.STATES,
                products=tuple(_cfg().products), next_before=rows[-1]["id"] if len(rows) == finder.PAGE else None)


@bp.get("/nova")
@requires("subs.grant")
def grant_form():
    return page("grant.html", products=tuple(_cfg().products), error=None,
                values={"key": secrets.token_urlsafe(12), "days": "30", "email": "", "name": "", "product": ""})


@bp.post("/nova")
@requires("subs.grant")
def grant():
    values = {k: request.form.get(k, "").strip()[:200] for k in ("email", "name", "product", "days", "key")}
    reason = request.form.get("reason", "").strip()[:REASON_MAX]
    again = {"products": tuple(_cfg().products), "values": values}
    if not reason:
        return page("grant.html", error="reason", **again), 400
    try:
        sub, _ = subs.grant(g.ledger, _cfg(), email=values["email"], product=values["product"],
                            days=int(values["days"] or 0), key=f"web:{values['key']}", name=values["name"] or None,
                            actor=actor(reason))
    except (UsageError, ValueError):
        return page("grant.html", error="bad_request", **again), 400
    return redirect(url_for("subs.show", sub_id=sub["id"], ok="grant"), 303)


@bp.get("/<int:sub_id>")
@requires("view")
def show(sub_id: int):
    return _show(sub_id, None)


def _show(sub_id: int, password: str | None):
    sub = _sub(sub_id)
    ok = request.args.get("ok")
    return page("sub.html", sub=sub, events=timeline.timeline(g.ledger, sub),
                actions=[a for a in ACTIONS if allowed(g.op["role"], f"subs.{a}")], password=password,
                ok=ok if ok in (*ACTIONS, "grant", "noop") else None)


@bp.post("/<int:sub_id>/senha")
@requires("subs.reveal")
def reveal(sub_id: int):
    _sub(sub_id)
    try:
        password = subs.reveal_password(g.ledger, _cfg(), str(sub_id), actor=actor())
    except UsageError:
        abort(400)
    return _show(sub_id, password)


@bp.get("/<int:sub_id>/confirmar/<action>")
@requires("view")
def confirm(sub_id: int, action: str):
    if action not in ACTIONS:
        abort(404)
    if not allowed(g.op["role"], f"subs.{action}"):
        abort(403)
    return page("confirm.html", sub=_sub(sub_id), action=action, kinds=KINDS, key=secrets.token_urlsafe(12),
                error=None)


@bp.post("/<int:sub_id>/<action>")
@requires("view")
def act(sub_id: int, action: str):
    if action not in ACTIONS:
        abort(404)
    if not allowed(g.op["role"], f"subs.{action}"):
        abort(403)
    sub = _sub(sub_id)
    reason = request.form.get("reason", "").strip()[:REASON_MAX]
    if not reason:
        return page("confirm.html", sub=sub, action=action, kinds=KINDS, key=request.form.get("key", ""),
                    error="reason"), 400
    ref, who, cfg, changed = str(sub_id), actor(reason), _cfg(), True
    try:
        if action == "extend":
            days = request.form.get("days", type=int) or 0
            _, changed = subs.extend(g.ledger, cfg, ref, days, f"web:{request.form.get('key', '')[:64]}",
                                     actor=who)
        elif action == "resend":
            kind = request.form.get("kind", "activation")
            if kind not in KINDS:
                abort(400)
            subs.resend(g.ledger, ref, kind, actor=who)
        elif action == "retry":
            subs.retry(g.ledger, ref, actor=who)
        elif action in ("suspend", "resume"):
            _, changed = subs.set_hold(g.ledger, cfg, ref, "suspended" if action == "suspend" else "resumed",
                                       actor=who)
        elif action == "cancel":
            subs.cancel(g.ledger, cfg, ref, bool(request.form.get("immediately")), actor=who)
    except UsageError:
        return page("confirm.html", sub=sub, action=action, kinds=KINDS, key=request.form.get("key", ""),
                    error="bad_request"), 400
    return redirect(url_for("subs.show", sub_id=sub_id, ok=action if changed else "noop"), 303)
