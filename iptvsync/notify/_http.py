"""The HTTP leg the gateways share: one ``requests.Session``, (connect, read) timeouts, JSON in
and out, and what went wrong on the way turned into a ``NotifyError``.

The one rule about sending twice lives here: a request is tried again inside a call only
when it certainly never left (connection refused, connect timeout, TLS handshake). Once the
bytes may have reached the gateway (read timeout, dropped connection), the error is
``ambiguous`` and the caller decides: these gateways take no idempotency key, and a second
activation message carries the buyer's password twice. A gateway's own replies are judged by
its module's ``raise_for_response``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from iptvsync.errors import NotifyError

CONNECT_TIMEOUT_S = 5.0
CONNECT_ATTEMPTS = 2
USER_AGENT = "iptvsync"


class Reply(NamedTuple):
    status: int
    body: Any  # decoded JSON, or the text when it is not JSON
    headers: dict


class GatewayHttp:
    def __init__(self, label: str, timeout_s: float, secrets: Iterable[str] = ()):
        import requests

        self.label = label
        self.timeout = (min(timeout_s, CONNECT_TIMEOUT_S), timeout_s)
        self.secrets = [s for s in secrets if s]
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.trust_env = False

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def error(self, text: str, **flags) -> NotifyError:
        return NotifyError(self.scrub(f"{self.label}: {text}"), **flags)

    def call(self, method: str, url: str, *, json_body: dict | None = None, headers: dict | None = None,
             what: str = "call") -> Reply:
        """One request; a ``Reply`` whatever its status, or ``NotifyError`` when none came."""
        import requests

        last: Exception | None = None
        for _ in range(CONNECT_ATTEMPTS):
            try:
                response = self.session.request(method, url, json=json_body, headers=headers or {},
                                                timeout=self.timeout, allow_redirects=False)
            except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
                last = exc  # never left: safe to try again at once
                continue
            except requests.exceptions.ConnectionError as exc:
                if _never_connected(exc):
                    last = exc
                    continue
                raise self.error(f"{what}: connection dropped after sending ({type(exc).__name__}); the"
                                 " gateway may have delivered it", ambiguous=True) from None
            except requests.exceptions.Timeout:
                raise self.error(f"{what}: no answer within {self.timeout[1]:g} s after sending; the gateway"
                                 " may have delivered it", ambiguous=True) from None
            except requests.exceptions.RequestException as exc:
                raise self.error(f"{what}: {type(exc).__name__}", ambiguous=True) from None
            try:
                body = response.json()
            except ValueError:
                body = response.text[:300]
            return Reply(response.status_code, body, dict(response.headers))
        raise self.error(f"{what}: unreachable ({_reason(last)})", gateway_wide=True)


def _never_connected(exc: Exception) -> bool:
    """requests wraps "connection refused" and DNS failures (nothing sent) in the same
    ConnectionError as a connection reset mid-reply (maybe sent): tell them apart."""
    text = repr(exc)
    return any(sign in text for sign in ("NewConnectionError", "Connection refused", "Name or service not known",
                                         "nodename nor servname", "Failed to resolve", "No route to host"))


def _reason(exc: Exception | None) -> str:
    text = repr(exc)
    for sign in ("Connection refused", "timed out", "Failed to resolve", "No route to host", "SSL"):
        if sign in text:
            return sign.lower()
    return type(exc).__name__ if exc else "no attempt"


def message_of(body: Any) -> str:
    """A short, one-line text of a reply body for an error message (never a whole page)."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return " ".join(text.split())[:200]
