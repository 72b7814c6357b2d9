"""The console's defences that do not depend on the page: response headers, the cookie's
name and flags, the client's address, and CSRF twice (a token on every unsafe method, and the
browser's own ``Sec-Fetch-Site``/``Origin`` word on where the form came from)."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Request, Response

from ..config import Config

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self';"
       " frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def is_tls(cfg: Config, request: Request) -> bool:
    """Served over TLS: the console's public origin is https (a TLS proxy in front), or the
    request itself came over TLS."""
    return cfg.admin.public_origin.startswith("https://") or request.scheme == "https"


def cookie_name(cfg: Config, request: Request, what: str = "session") -> str:
    """``__Host-`` over TLS: the browser then insists on Secure, Path=/ and no Domain."""
    return f"__Host-iptvsync-{what}" if is_tls(cfg, request) else f"iptvsync-{what}"


def set_cookie(response: Response, cfg: Config, request: Request, what: str, value: str) -> None:
    response.set_cookie(cookie_name(cfg, request, what), value, path="/", httponly=True, samesite="Strict",
                        secure=is_tls(cfg, request))


def clear_cookie(response: Response, cfg: Config, request: Request, what: str) -> None:
    response.delete_cookie(cookie_name(cfg, request, what), path="/", httponly=True, samesite="Strict",
                           secure=is_tls(cfg, request))


def client_address(cfg: Config, request: Request) -> str:
    """The browser's address: the peer, or, when the peer is a trusted proxy, the last address
    it put in X-Forwarded-For (the one it saw; anything before it the client could have typed)."""
    peer = request.remote_addr or "-"
    if _trusted(peer, cfg.admin.trusted_proxies):
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if forwarded:
            return forwarded[-1][:64]
    return peer


def _trusted(peer: str, proxies: tuple[str, ...]) -> bool:
    """``peer`` is one of ``proxies`` (addresses or networks, e.g. "127.0.0.1" or "127.0.0.1/32")."""
    import ipaddress

    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if address in ipaddress.ip_network(proxy, strict=False):
                return True
        except ValueError:
            continue
    return False


def same_origin(cfg: Config, request: Request) -> bool:
    """What the browser says about where an unsafe request came from (datasette's csrf check):
    ``Sec-Fetch-Site`` must be same-origin (or none: typed by the user), else ``Origin`` must be
    this console. A request carrying neither (an old browser, curl) relies on the token alone."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if cfg.admin.public_origin:
        return origin.rstrip("/") == cfg.admin.public_origin.rstrip("/")
    return urlsplit(origin).netloc == request.host


def token_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected and given) and hmac.compare_digest(expected.encode(), given.encode())


def new_token() -> str:
    return secrets.token_urlsafe(32)


def secure_headers(cfg: Config, request: Request, response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
    if is_tls(cfg, request):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return response
