"""The admin console: a Flask app (``create_app(cfg)``) served by ``iptvsync admin serve``,
a process of its own, never the receiver. It calls ``ops/`` only, like the CLI beside it.

One blueprint per page group (``auth``, ``dashboard``, ``subs``, ``inbox``, ``audit``,
``operators``), one ``Ledger`` per request in ``g``, closed on teardown.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask, g, request
from jinja2 import StrictUndefined
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from ..clock import human
from ..config import Config
from ..ops.console import open_ledger

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "admin"
log = logging.getLogger("iptvsync.admin")


def create_app(cfg: Config) -> Flask:
    from . import auth, security
    from .pages import audit, dashboard, inbox, operators, subs
    from .render import page

    app = Flask("iptvsync.admin", template_folder=str(TEMPLATES), static_folder=str(TEMPLATES / "static"),
                static_url_path="/static")
    app.url_map.converters["int"] = _RowId
    app.config.update(IPTVSYNC=cfg, MAX_CONTENT_LENGTH=64 * 1024, PROPAGATE_EXCEPTIONS=False)
    app.jinja_env.undefined = StrictUndefined
    app.jinja_env.autoescape = True
    app.jinja_env.filters["when"] = lambda value: human(value) if value else ""
    open_ledger(cfg, migrate=True).close()  # the operator tables exist before the first request

    @app.before_request
    def _open():
        g.ledger = open_ledger(cfg)

    @app.teardown_appcontext
    def _close(_exc):
        ledger = g.pop("ledger", None)
        if ledger is not None:
            ledger.close()

    app.before_request(auth.load_operator)
    app.after_request(lambda response: security.secure_headers(cfg, request, response))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return page("error.html", status=exc.code, message_key=_message_key(exc), error_id=None), exc.code

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        error_id = secrets.token_hex(6)
        log.error("admin error %s on %s %s", error_id, request.method, request.path, exc_info=exc)
        return page("error.html", status=500, message_key="error_text", error_id=error_id), 500

    for module in (auth, dashboard, subs, inbox, audit, operators):
        app.register_blueprint(module.bp)
    return app


class _RowId(IntegerConverter):
    """``<int:...>`` in a path: a row id SQLite can hold; a bigger one is a 404, not a 500."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def _message_key(exc: HTTPException) -> str:
    if exc.description in ("csrf", "forbidden", "bad_request", "not_found"):
        return exc.description
    return {403: "forbidden", 404: "not_found", 405: "not_allowed"}.get(exc.code or 0, "bad_request")
