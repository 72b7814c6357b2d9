"""Rendering a page: the template and the context every page shares (the operator, their
words, the CSRF token, the label functions). Templates print; labels are chosen here."""

from __future__ import annotations

from typing import Any

from flask import g, render_template

from .labels import action_label, event_label, value_label, words
from .problems import problem_label
from .roles import allowed

#: what every page's context has besides its own
SHARED = ("t", "op", "csrf", "can", "act", "val", "ev", "lang", "nav", "problem")
#: each template's own context, as its view gives it (tests/test_admin_web.py renders every page
#: and checks it against this: a template may rely on exactly these names)
CONTEXTS: dict[str, frozenset[str]] = {name: frozenset(keys) for name, keys in {
    "login.html": ("message", "values", "next"),
    "totp.html": ("message", "values", "next"),
    "error.html": ("status", "message_key", "error_id"),
    "painel.html": ("p", "windows", "figures", "checks"),
    "subs.html": ("rows", "q", "state", "product", "states", "products", "next_before"),
    "sub.html": ("sub", "events", "actions", "password", "ok"),
    "confirm.html": ("sub", "action", "kinds", "key", "error"),
    "grant.html": ("products", "error", "values"),
    "inbox.html": ("rows", "q", "status", "statuses", "next_before"),
    "postback.html": ("row", "body", "error", "attachable"),
    "audit.html": ("rows", "filters", "chain", "broken", "next_before"),
    "operators.html": ("rows", "roles", "languages", "error"),
}.items()}
NAV = (("dashboard.painel", "painel", "view"), ("subs.search", "assinaturas", "view"),
       ("inbox.listing", "postbacks", "view"), ("audit.listing", "registro", "view"),
       ("operators.listing", "operadores", "operators"))


def language() -> str:
    """The operator's language (of the half-logged-in session between password and TOTP too)."""
    return (g.get("op") or g.get("session") or {}).get("language") or "pt-BR"


def page(template: str, **context: Any) -> str:
    op = g.get("op")
    lang = language()
    role = op["role"] if op else None
    shared = {
        "t": words(lang), "op": op, "lang": lang,
        "csrf": g.get("form_token") or "",
        "can": lambda action: allowed(role, action),
        "act": lambda action: action_label(lang, action),
        "val": lambda value: value_label(lang, value),
        "ev": lambda what: event_label(lang, what),
        "problem": lambda line: problem_label(lang, line),
        "nav": [(endpoint, key) for endpoint, key, action in NAV if allowed(role, action)] if op else [],
    }
    return render_template(template, **shared, **context)
