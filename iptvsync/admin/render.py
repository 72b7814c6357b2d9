"""Rendering a page: the template and the context every page shares (the operator, their
words, the CSRF token, the label functions). Templates print; labels are chosen here."""

from __future__ import annotations

from typing import Any

from flask import g, render_template

from .labels import action_label, event_label, value_label, words
from .roles import allowed

#: what every page's context has besides its own (tests/test_admin_pages.py checks each page's)
SHARED = ("t", "op", "csrf", "can", "act", "val", "ev", "lang", "nav")
NAV = (("dashboard.painel", "painel", "view"), ("subs.search", "assinaturas", "view"),
       ("inbox.listing", "postbacks", "view"), ("audit.listing", "registro", "view"),
       ("operators.listing", "operadores", "operators"))


def page(template: str, **context: Any) -> str:
    op = g.get("op")
    session = g.get("session")
    lang = (op or session or {}).get("language") or "pt-BR"
    role = op["role"] if op else None
    shared = {
        "t": words(lang), "op": op, "lang": lang,
        "csrf": (session or {}).get("csrf") or g.get("pre_csrf") or "",
        "can": lambda action: allowed(role, action),
        "act": lambda action: action_label(lang, action),
        "val": lambda value: value_label(lang, value),
        "ev": lambda what: event_label(lang, what),
        "nav": [(endpoint, key) for endpoint, key, action in NAV if allowed(role, action)] if op else [],
    }
    g.rendered_context = set(context)  # what the page gave, for the context test
    return render_template(template, **shared, **context)
