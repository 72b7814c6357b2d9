"""The postback receiver: verify, store durably, answer. Nothing else happens on this path.

A WSGI app on cheroot. The ledger is written by a writer process of its own
(``iptvsync.ledgerwriter``) that commits whatever requests are waiting in one transaction
(group commit): each request still gets its 200 only after its own row is on disk with
``synchronous=FULL``, but concurrent requests share an fsync.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

from .config import Config
from .inbox import inbox_row
from .ledgerwriter import LedgerUnavailable, Writer
from .postback import MalformedPostback, UnsupportedContentType, parse, redact

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


class ReceiverApp:
    """The WSGI application. ``POST <receiver.path>`` and ``GET /healthz``."""

    FORM_TYPES = ("application/x-www-form-urlencoded", "application/json", "multipart/form-data")

    def __init__(self, config: Config, writer: Writer):
        self.cfg = config.receiver
        self.secret = config.require("MONETIZZE_CHAVE_UNICA")
        self.product_keys = {code: p.key for code, p in config.products.items() if p.key}
        self.check_product_key = config.monetizze.check_product_key
        self.allowed = _networks(self.cfg.allowed_ips)
        self.proxies = _networks(self.cfg.trusted_proxies)
        self.writer = writer

    def client_addr(self, environ) -> str | None:
        peer = environ.get("REMOTE_ADDR")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded and _in(peer, self.proxies):
            # Walk from the right: the first hop that is not one of our proxies is the client.
            for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
                if not _in(hop, self.proxies):
                    return hop
        return peer

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        remote = self.client_addr(environ)
        status, body, route = self.handle(environ, remote)
        payload = json.dumps(body).encode()
        start_response(f"{status} {_REASONS.get(status, '')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        access_log.info('%s "%s %s" %d %.1fms %s', remote, environ.get("REQUEST_METHOD"), route,
                        status, (time.perf_counter() - started) * 1000, body.get("result", ""))
        return [payload]

    def handle(self, environ, remote) -> tuple[int, dict, str]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            if method not in ("GET", "HEAD"):
                return 405, {"error": "method not allowed"}, "/healthz"
            return 200, {"result": "ok"}, "/healthz"
        if path != self.cfg.path:
            return self.reject(404, "unknown path", remote, "<other>")
        route = "<postback>"  # the path is a capability: never log it
        if method != "POST":
            return self.reject(405, "method not allowed", remote, route)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self.reject(400, "bad content-length", remote, route)
        limit = self.cfg.max_body_bytes
        if length > limit:
            return self.reject(413, "body too large", remote, route)
        raw = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read(limit + 1)
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
            return self.reject(403, "chave_unica missing or wrong", remote, route)
        if self.check_product_key:
            expected = self.product_keys.get(pb.product_code or "", "")
            if not expected or not hmac.compare_digest((pb.product_key or "").encode(), expected.encode()):
                return self.reject(403, "produto[chave] missing or wrong", remote, route)
        if self.allowed and not _in(remote, self.allowed):
            return self.reject(403, "source address not allowed", remote, route)
        row = inbox_row(pb, redact(raw, self.secret), content_type=content_type, remote_addr=remote)
        try:
            inbox_id, duplicate = self.writer.store(row)
        except LedgerUnavailable:
            return 503, {"error": "ledger unavailable, retry later"}, route
        return 200, {"result": "duplicate" if duplicate else "stored", "id": inbox_id}, route

    def reject(self, status: int, reason: str, remote: str | None, route: str) -> tuple[int, dict, str]:
        log.warning("rejected %d from %s: %s", status, remote, reason)
        self.writer.reject(status, reason, remote)
        return status, {"error": reason}, route


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 415: "Unsupported Media Type",
            503: "Service Unavailable"}


#: How long a request thread waits for a kept-alive connection's next request, and how many it
#: serves in a row, before handing the connection back to cheroot's selector (``_server_class``).
KEEPALIVE_WAIT_S = 0.01
KEEPALIVE_MAX_REQUESTS = 100


def _server_class():
    """cheroot's WSGI server, with a busy kept-alive connection served on by its request thread.

    cheroot hands every kept-alive connection back to its one selector thread after each
    request, and that thread must win the GIL back from the request threads to dispatch the
    next one: under load that hand-off, not the work, capped the receiver (bench/README.md).
    Here the request thread first waits up to ``KEEPALIVE_WAIT_S`` for the next request (or
    the close) on the same connection and serves it itself, up to ``KEEPALIVE_MAX_REQUESTS``
    in a row. It queues the connection behind the others instead whenever connections are
    waiting for a thread (no connection can starve the rest), and an idle connection goes back
    to the selector as before.
    """
    import select

    from cheroot import wsgi

    class Server(wsgi.Server):
        def put_conn(self, conn):
            for _ in range(KEEPALIVE_MAX_REQUESTS):
                if not self.ready:
                    break
                if not conn.rfile.has_data():
                    try:
                        ready, _, _ = select.select([conn.socket], [], [], KEEPALIVE_WAIT_S)
                    except (OSError, ValueError):  # closed meanwhile: let cheroot clean up
                        ready = []
                    if not ready:
                        break
                if self.requests.qsize:  # others wait for a thread: take a place in the queue
                    self.process_conn(conn)
                    return
                try:
                    keep_open = conn.communicate()
                except Exception:  # what the pool does with a failed connection: drop it
                    keep_open = False
                if not keep_open:
                    conn.close()
                    return
            super().put_conn(conn)  # idle (the selector watches it) or the server is stopping

    return Server


def make_server(config: Config, *, host: str | None = None, port: int | None = None,
                certfile: str | None = None, keyfile: str | None = None):
    """A ready (not started) cheroot server and its writer."""
    writer = Writer(config.ledger_path, ledger_timeout_s=config.receiver.ledger_timeout_s)
    app = ReceiverApp(config, writer)
    bind = (host or config.receiver.host, port if port is not None else config.receiver.port)
    server = _server_class()(bind, app, numthreads=config.receiver.threads,
                             timeout=config.receiver.request_timeout_s, shutdown_timeout=10,
                             # cheroot's default listen backlog is 5: a burst of new connections beyond
                             # it has SYNs dropped and waits a second or more for the retransmission
                             request_queue_size=socket.SOMAXCONN, server_name="iptvsync")
    certfile = certfile or config.receiver.certfile
    keyfile = keyfile or config.receiver.keyfile
    if certfile:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(str(config.resolve(certfile)), str(config.resolve(keyfile)))
    return server, writer


def serve(config: Config, *, host=None, port=None, certfile=None, keyfile=None,
          on_ready: Callable[[str], None] | None = None,
          background: Callable[[threading.Event], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT; in-flight requests finish, then the writer drains."""
    server, writer = make_server(config, host=host, port=port, certfile=certfile, keyfile=keyfile)
    stop = threading.Event()
    # server.stop() closes the socket, then waits for in-flight requests: it runs off the main
    # thread, and the writer is closed only after it returns, so those requests still commit.
    stopper = threading.Thread(target=server.stop, name="stopper", daemon=True)

    def _stop(signum, _frame):
        log.info("signal %d: finishing in-flight requests", signum)
        stop.set()
        if stopper.ident is None:
            stopper.start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.prepare()
    bound = server.bind_addr
    scheme = "https" if server.ssl_adapter else "http"
    url = f"{scheme}://{bound[0]}:{bound[1]}"
    log.info("listening on %s (postback path configured, health at /healthz)", url)
    if on_ready:
        on_ready(url)
    worker = None
    if background:
        worker = threading.Thread(target=background, args=(stop,), name="process-every", daemon=True)
        worker.start()
    try:
        server.serve()
    finally:
        stop.set()
        if stopper.ident is None:
            server.stop()
        else:
            stopper.join()
        writer.close()
        if worker:
            worker.join(timeout=30)
