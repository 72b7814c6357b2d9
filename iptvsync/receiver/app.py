"""The receiver's WSGI app: verify, store durably, answer. Nothing else happens on this path.

The ledger is written by a writer process of its own (``iptvsync.receiver.writer``) that
commits whatever requests are waiting in one transaction (group commit): each request still
gets its 200 only after its own row is on disk with ``synchronous=FULL``, but concurrent
requests share an fsync. The HTTP server around it is ``iptvsync.receiver.server``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from typing import NoReturn

from ..config import Config
from ..ledger.inbox import inbox_row
from ..monetizze.marks import KEY_REFUSED
from ..monetizze.postback import MalformedPostback, UnsupportedContentType, parse
from ..monetizze.redact import redact_stored
from .body import BodyError
from .refusals import RefusalLog
from .writer import LedgerUnavailable, Writer

log = logging.getLogger("iptvsync.receiver")
access_log = logging.getLogger("iptvsync.access")


def _networks(cidrs) -> list:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def _in(addr: str | None, networks) -> bool:
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return any(ip in n for n in networks)


def _monetizze_shaped(pb, content_type: str | None) -> bool:
    """Posted as Monetizze posts (a PHP form, exemplo.php reads ``$_POST``; reference §1.1) with
    the fields every Monetizze postback has, test button's included: a key, an event or sale
    status, a product. Refused for its key, it means real sales are being refused."""
    form = (content_type or "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
    return form and bool(pb.chave_unica) and pb.event is not None and bool(pb.product_code)


class ReceiverApp:
    """The WSGI application. ``POST <receiver.path>`` and ``GET /healthz``."""

    def __init__(self, config: Config, writer: Writer):
        self.cfg = config.receiver
        self.secret = config.require("MONETIZZE_CHAVE_UNICA")
        self.product_keys = {code: p.key for code, p in config.products.items() if p.key}
        self.check_product_key = config.monetizze.check_product_key
        self.allowed = _networks(self.cfg.allowed_ips)
        self.proxies = _networks(self.cfg.trusted_proxies)
        self.writer = writer
        self.refusals = RefusalLog(log)

    def client_addr(self, environ) -> str | None:
        peer = environ.get("REMOTE_ADDR")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded and _in(peer, self.proxies):
            # Walk from the right: the first hop that is not one of our proxies is the client.
            for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
                if not _in(hop, self.proxies):
                    return hop
        return peer

    def is_trusted_proxy(self, addr: str | None) -> bool:
        return _in(addr, self.proxies)

    def route(self, path: str) -> str:
        """The path as the access log shows it: the postback path is a capability, never logged."""
        return {"/healthz": "/healthz", self.cfg.path: "<postback>"}.get(path, "<other>")

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        remote = self.client_addr(environ)
        logged = True
        try:
            status, body, route = self.handle(environ, remote)
        except Refused as refusal:
            status, body, route = refusal.status, {"error": refusal.reason}, refusal.route
            logged = refusal.logged
        except Exception:  # a true internal fault: a traceback in the log, never on the wire
            logged = self.refusals.admit(500, "internal error")
            if logged:
                log.exception("internal error")
            status, body, route = 500, {"error": "internal error"}, self.route(environ.get("PATH_INFO", ""))
            self.writer.reject(500, "internal error", remote)
        payload = json.dumps(body).encode()
        start_response(f"{status} {_REASONS.get(status, '')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        if logged:
            access_log.info('%s "%s %s" %d %.1fms %s', remote, environ.get("REQUEST_METHOD"), route,
                            status, (time.perf_counter() - started) * 1000, body.get("result", ""))
        return [payload]

    def handle(self, environ, remote) -> tuple[int, dict, str]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return 405, {"error": "method not allowed"}, "/healthz"
            problem = self.writer.health()
            if problem:
                return 503, {"error": problem}, "/healthz"
            return 200, {"result": "ok"}, "/healthz"
        if path != self.cfg.path:
            return self.reject(404, "unknown path", remote, "<other>")
        route = "<postback>"
        if method != "POST":
            return self.reject(405, "method not allowed", remote, route)
        # Before a byte of the body is read: the same answer whatever the body holds.
        if self.allowed and not _in(remote, self.allowed):
            return self.reject(403, "source address not allowed", remote, route)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:  # "-1" would read to the end of the stream
            return self.reject(400, "bad content-length", remote, route)
        limit = self.cfg.max_body_bytes
        if length > limit:
            return self.reject(413, "body too large", remote, route)
        try:
            raw = environ["wsgi.input"].read()
        except BodyError as exc:
            return self.reject(exc.status, exc.reason, remote, route)
        if len(raw) > limit:
            return self.reject(413, "body too large", remote, route)
        content_type = environ.get("CONTENT_TYPE") or None
        try:
            _payload, pb = parse(raw, content_type)
        except UnsupportedContentType:
            return self.reject(415, "unsupported content type", remote, route)
        except MalformedPostback:
            return self.reject(400, "malformed body", remote, route)
        if not hmac.compare_digest((pb.chave_unica or "").encode(), self.secret.encode()):
            reason = KEY_REFUSED if _monetizze_shaped(pb, content_type) else "chave_unica missing or wrong"
            return self.reject(403, reason, remote, route)
        if self.check_product_key:
            expected = self.product_keys.get(pb.product_code or "", "")
            if not expected or not hmac.compare_digest((pb.product_key or "").encode(), expected.encode()):
                return self.reject(403, "produto[chave] missing or wrong", remote, route)
        body, stored_type = redact_stored(raw, content_type, self.secret)
        row = inbox_row(pb, body, content_type=stored_type, remote_addr=remote)
        if any(self.secret in value for value in row.values() if type(value) is str):
            row = self._without_secret(row, body, stored_type, remote)
        try:
            inbox_id, duplicate = self.writer.store(row)
        except LedgerUnavailable:
            return 503, {"error": "ledger unavailable, retry later"}, route
        return 200, {"result": "duplicate" if duplicate else "stored", "id": inbox_id}, route

    def _without_secret(self, row: dict, body: bytes, content_type: str | None, remote: str | None) -> dict:
        """The row of a postback that repeats the key in another field (``venda[codigo]`` = the
        key): its columns read from the body as stored, key blanked, as the engine reads them."""
        try:
            row = inbox_row(parse(body, content_type)[1], body, content_type=content_type, remote_addr=remote)
        except MalformedPostback:
            pass
        return {name: value.replace(self.secret, "") if type(value) is str else value
                for name, value in row.items()}

    def reject(self, status: int, reason: str, remote: str | None, route: str) -> NoReturn:
        """Refuse this request: counted, always; logged within ``RefusalLog``'s limits (the
        answer and its access line are written by ``__call__``, which catches this)."""
        self.writer.reject(status, reason, remote, on_path=route == "<postback>")
        logged = self.refusals.admit(status, reason)
        if logged:
            log.warning("rejected %d from %s: %s", status, remote, reason)
        raise Refused(status, reason, route, logged)

    def refuse(self, status: int, reason: str, remote: str | None, method: str = "-", path: str = "") -> None:
        """A request the server answered before it reached the app (bad framing, too slow, too
        many connections): the same log line, access line and count as the app's rejections."""
        route = self.route(path) if path else "-"
        self.writer.reject(status, reason, remote, on_path=route == "<postback>")
        if self.refusals.admit(status, reason):
            log.warning("rejected %d from %s: %s", status, remote, reason)
            access_log.info('%s "%s %s" %d %.1fms %s', remote, method or "-", route, status, 0.0, "")


class Refused(Exception):
    """``ReceiverApp.reject``: the request is refused with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str, route: str, logged: bool):
        super().__init__(status, reason)
        self.status, self.reason, self.route, self.logged = status, reason, route, logged


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
            415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable"}
