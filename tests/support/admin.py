"""Driving the admin console in tests: operators, a logged-in Flask test client, form tokens."""

from __future__ import annotations

import re

from iptvsync.ledger.db import Ledger
from iptvsync.ops import operators

PASSWORD = "senha-forte-123"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def add_operator(cfg, name: str, role: str, password: str = PASSWORD, language: str = "pt-BR") -> dict:
    ledger = Ledger(cfg.ledger_path)
    try:
        return operators.add(ledger, name, role, password, language=language)
    finally:
        ledger.close()


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html[:2000]
    return match.group(1)


def login(client, name: str, password: str = PASSWORD, remote: str = "127.0.0.1", **headers):
    """Log in through the forms from address ``remote``; returns the POST's response (not followed)."""
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"usuario": name, "senha": password, "csrf": token}, headers=headers,
                       environ_base={"REMOTE_ADDR": remote})


def token(client, path: str = "/") -> str:
    """The session's CSRF token, as a page carries it."""
    return csrf_of(client.get(path).get_data(as_text=True))
