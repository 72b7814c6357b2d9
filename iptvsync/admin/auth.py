"""Logging in, as a sequence of small steps: the password, then (when the operator has one, or
is an owner and ``[admin] require_totp`` is on) a TOTP code within 300 s, then a fresh session.
Logout is a POST. ``load_operator`` runs before every request: it reloads the operator from
the ledger (a removed operator is out at once), sends anyone without a session to the login
page, and refuses an unsafe request from elsewhere or without the session's CSRF token."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, g, redirect, request, url_for

from ..clock import now
from ..ops import operators, sessions
from ..ops.actor import Actor
from .render import page
from .security import (
    SAFE_METHODS,
    clear_cookie,
    client_address,
    cookie_name,
    new_token,
    same_origin,
    set_cookie,
    token_matches,
)

bp = Blueprint("auth", __name__)
PUBLIC = frozenset({"auth.login", "auth.totp", "static"})
MAX_FIELD = 256


def _cfg():
    return current_app.config["IPTVSYNC"]


def load_operator():
    cfg = _cfg()
    g.client = client_address(cfg, request)
    g.sid = request.cookies.get(cookie_name(cfg, request))
    g.session = sessions.load(g.ledger, g.sid)
    g.op = g.session if g.session and g.session["stage"] == "full" else None
    g.pre_csrf = request.cookies.get(cookie_name(cfg, request, "pre"))
    if request.endpoint not in PUBLIC and g.op is None:
        if request.endpoint is None:
            abort(404)
        return redirect(url_for("auth.login", next=request.full_path if request.method in SAFE_METHODS else None,
                                expired=1 if g.sid else None), 303)
    # the token a form carries: the session's, or on the login form (before any session, or
    # beside a half-done one) the one bound to the short "pre" cookie
    g.form_token = g.pre_csrf if request.endpoint == "auth.login" or g.session is None else g.session["csrf"]
    if request.method not in SAFE_METHODS:
        if not same_origin(cfg, request) or not token_matches(g.form_token, request.form.get("csrf")):
            abort(403, description="csrf")
    return None


def actor(reason: str | None = None) -> Actor:
    """Who the audit row names for this request: ``web:<login>`` and the client's address."""
    return Actor(f"web:{g.op['name']}", client=g.client, reason=reason)


def _login_page(message: str | None = None, status: int = 200, **values):
    cfg = _cfg()
    if not g.pre_csrf:
        g.pre_csrf = g.form_token = new_token()
    response = current_app.make_response((page("login.html", message=message, values=values,
                                                next=_safe_next(request.values.get("next"))), status))
    set_cookie(response, cfg, request, "pre", g.pre_csrf)
    return response


def _safe_next(target: str | None) -> str:
    """Only a path on this console: never another site (``//evil``, ``https://…``, ``/\\evil``)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target:
        return target
    return url_for("dashboard.painel")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.op is not None:
            return redirect(url_for("dashboard.painel"), 303)
        return _login_page("expired" if request.args.get("expired") else None)
    name = request.form.get("usuario", "").strip().lower()[:MAX_FIELD]
    password = request.form.get("senha", "")[:1024]
    keys = sessions.throttle_keys(name, g.client)
    until = sessions.blocked_until(g.ledger, keys)
    if until is not None:
        wait = max(1, int((until - now()).total_seconds()) + 1)
        response = _login_page("throttled", 429, s=wait)
        response.headers["Retry-After"] = str(wait)
        return response
    op = operators.check_password(g.ledger, name, password)
    if op is None:
        known = name if operators.exists(g.ledger, name) else None
        sessions.failed(g.ledger, keys, Actor(f"web:{known or '?'}", client=g.client), known)
        return _login_page("bad_login", 401)
    sessions.succeeded(g.ledger, keys)
    if operators.needs_totp(_cfg(), op):
        if not op["totp_secret_enc"]:
            return _login_page("totp_required", 403)
        return _start(op, "password", url_for("auth.totp", next=request.form.get("next")))
    return _finish(op)


@bp.route("/login/totp", methods=["GET", "POST"])
def totp():
    session = g.session
    if session is None or session["stage"] != "password":
        return redirect(url_for("auth.login"), 303)
    if request.method == "GET":
        return page("totp.html", message=None, values={}, next=_safe_next(request.args.get("next")))
    keys = sessions.throttle_keys(session["name"], g.client)
    until = sessions.blocked_until(g.ledger, keys)
    if until is not None:
        wait = max(1, int((until - now()).total_seconds()) + 1)
        return page("totp.html", message="throttled", values={"s": wait}, next=_safe_next(None)), 429, \
            {"Retry-After": str(wait)}
    if not operators.check_totp(g.ledger, _cfg(), session["operator_id"], request.form.get("codigo", "")[:16]):
        sessions.failed(g.ledger, keys, Actor(f"web:{session['name']}", client=g.client), session["name"])
        return page("totp.html", message="bad_code", values={}, next=_safe_next(request.form.get("next"))), 401
    sessions.succeeded(g.ledger, keys)
    return _finish(operators.by_id(g.ledger, session["operator_id"]))


def _start(op: dict, stage: str, target: str):
    """A new session id at every step (the old one ends): whatever id a browser held before
    logging in is worth nothing after."""
    sessions.end(g.ledger, g.sid)
    sid, _ = sessions.start(g.ledger, op["id"], stage, g.client)
    response = redirect(target, 303)
    set_cookie(response, _cfg(), request, "session", sid)
    return response


def _finish(op: dict):
    g.ledger.audit("admin.login", actor=f"web:{op['name']}", client=g.client)
    response = _start(op, "full", _safe_next(request.form.get("next")))
    clear_cookie(response, _cfg(), request, "pre")
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    sessions.end(g.ledger, g.sid)
    g.ledger.audit("admin.logout", actor=f"web:{g.op['name']}", client=g.client)
    response = redirect(url_for("auth.login"), 303)
    clear_cookie(response, _cfg(), request, "session")
    return response
