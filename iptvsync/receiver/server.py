"""The receiver's HTTP server: cheroot with TLS, its writer process, and a clean SIGTERM.

``serve`` runs ``ReceiverApp`` (``iptvsync.receiver.app``) until SIGTERM/SIGINT; in-flight
requests finish before the writer drains.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable

from ..config import Config
from ..errors import IptvsyncError
from .app import ReceiverApp
from .body import BodyReader
from .deadlines import Deadlines
from .gate import Gate
from .head import MAX_HEAD, NO_BYTES, has_bytes
from .signals import SignalThread
from .tls import CertReloader, lazy_handshake_adapter
from .writer import Writer

log = logging.getLogger("iptvsync.receiver")


#: How long a request thread waits for a kept-alive connection's next request, and how many it
#: serves in a row, before handing the connection back to cheroot's selector (``_server_class``).
KEEPALIVE_WAIT_S = 0.01
KEEPALIVE_MAX_REQUESTS = 100
#: A read taking longer than this is a slow client's; each one gets a thread added (``max_threads``).
SLOW_READ_S = 0.25
GROW_BY = 16  # added beyond that, for the real requests waiting


def _server_class():
    """cheroot's WSGI server, hardened against hostile clients and tuned for kept-alive load.

    Hostile clients (docs/receiver.md): a connection gets a request thread only once its whole
    request is in (``Gate``: head limits, head and body deadlines, TLS handshakes, all without a
    thread); each source address may hold ``max_connections_per_ip`` connections; while slow
    bodies too big for the gate hold request threads (``Deadlines``) the pool grows, up to
    ``max_threads`` (``ensure_threads``); the body is read by ``BodyReader`` within
    ``max_body_bytes``; and every failure cheroot answers by itself (bad request line, bad
    headers, timeouts) is logged and counted like the app's own rejections, never as a
    traceback.

    Kept-alive load: cheroot hands every kept-alive connection back to its one selector thread
    after each request, and that thread must win the GIL back from the request threads to
    dispatch the next one: under load that hand-off, not the work, capped the receiver
    (bench/README.md). Here the request thread first waits up to ``KEEPALIVE_WAIT_S`` for the
    next request (or the close) on the same connection and serves it itself, up to
    ``KEEPALIVE_MAX_REQUESTS`` in a row. It queues the connection behind the others instead
    whenever connections are waiting for a thread (no connection can starve the rest), and an
    idle connection goes back to the selector as before; a next request not wholly there yet
    goes to the gate (``Gate.try_now``).
    """
    import select

    from cheroot import server as cheroot_server
    from cheroot import wsgi

    class Request(cheroot_server.HTTPRequest):
        def parse_request(self):
            srv = self.server
            # a head the gate has in full and whose body's deadline already runs: not restarted
            head_deadline = getattr(self.conn, "body_due", None) is None
            if head_deadline:
                srv.deadlines.start(self.conn, srv.header_timeout_s)
            try:
                self._parse_request()
            finally:
                if head_deadline:
                    srv.deadlines.clear(self.conn)
            if not self.ready and not self.answered and getattr(self.conn, "timed_out", False):
                # cut before a whole request line (a TLS client that never shook hands reads as EOF)
                with contextlib.suppress(OSError, ValueError):
                    self.simple_response("408 Request Timeout")

        def _parse_request(self):
            try:
                super().parse_request()
            except (OSError, ValueError) as exc:  # reset, TLS failure, socket timeout, deadline
                self.ready = False
                if isinstance(exc, TimeoutError) or getattr(self.conn, "timed_out", False):
                    with contextlib.suppress(OSError, ValueError):
                        self.simple_response("408 Request Timeout")
                else:
                    self.close_connection = True
            except Exception:  # cheroot tripped over the client's head (a folded first header…)
                self.ready = False
                with contextlib.suppress(OSError, ValueError):
                    self.simple_response("400 Bad Request")

        answered = False
        refusal = ""  # a reason more precise than the status's (read_request_headers)

        def read_request_headers(self):
            """cheroot's checks, then what it lets through: an underscore in a header name (WSGI
            would fold ``X_Forwarded_For`` into ``X-Forwarded-For``), HTTP/1.1 without ``Host``,
            a ``Content-Length`` that is not all digits (``+5``, ``5_0``)."""
            if not super().read_request_headers():
                return False
            length = self.inheaders.get(b"Content-Length")
            if any(b"_" in name for name in self.inheaders):
                self.refusal = "underscore in a header name"
            elif self.request_protocol == b"HTTP/1.1" and b"Host" not in self.inheaders:
                self.refusal = "no host header"
            elif length is not None and not length.isdigit():
                self.refusal = "bad content-length"
            else:
                return True
            self.simple_response("400 Bad Request")
            return False

        def simple_response(self, status, msg=""):
            """cheroot's own answers (400, 408, 413, 414, 500, 501): logged and counted too."""
            self.answered = True
            code = int(str(status)[:3])
            if getattr(self.conn, "timed_out", False) and code == 400:
                status, code = "408 Request Timeout", 408
            if code == 413:  # only ever the head here (bodies are BodyReader's): 431, as the gate says
                status, code = "431 Request Header Fields Too Large", 431
            reason = self.refusal or {408: "request not received in time", 431: "headers too large",
                                      414: "request line too long", 501: "unsupported transfer encoding"}.get(
                                          code, "malformed request" if code < 500 else "internal error")
            path = getattr(self, "path", b"") or b""
            method = getattr(self, "method", b"") or b"-"
            self.server.wsgi_app.refuse(code, reason, self.conn.remote_addr,
                                        method.decode("latin-1"), path.decode("latin-1"))
            self.close_connection = True
            super().simple_response(status, "")

        def respond(self):
            srv = self.server
            length = None
            if not self.chunked_read:
                length = int(self.inheaders.get(b"Content-Length", 0) or 0)  # validated by cheroot
            due = getattr(self.conn, "body_due", None)
            self.rfile = BodyReader(
                self.conn.rfile, length, srv.max_body_bytes,
                on_start=lambda: self._body_deadline(due),
                on_end=lambda: srv.deadlines.clear(self.conn),
                timed_out=lambda: getattr(self.conn, "timed_out", False))
            try:
                self.server.gateway(self).respond()
            finally:
                srv.deadlines.clear(self.conn)
                self.conn.body_due = None
            if self.ready:
                self.ensure_headers_sent()
            if self.chunked_write:
                self.conn.wfile.write(b"0\r\n\r\n")

        def _body_deadline(self, due: float | None) -> None:
            """``request_timeout_s`` from the end of the head (the gate's ``body_due``), however
            long the request waited for this thread; a connection already cut stays cut."""
            if due is None:
                self.server.deadlines.start(self.conn, self.server.timeout)
            elif not getattr(self.conn, "timed_out", False):
                self.server.deadlines.start(self.conn, due - time.monotonic())

        def send_headers(self):
            if not getattr(self.rfile, "done", True):
                self.rfile.skip_if_here()
            if not getattr(self.rfile, "done", True):  # unread body bytes would be read as the next request
                self.close_connection = True
            super().send_headers()

    class Connection(cheroot_server.HTTPConnection):
        RequestHandlerClass = Request
        source: str | None = None

        def __init__(self, server, sock, makefile=None):
            """cheroot's, without what it made for every connection before a byte arrived (most
            of the cost of 5,000 reconnecting attackers): two file objects, made by the gate once
            the request is in (``gate.NO_BYTES`` until then), and two per-connection ``lru_cache``
            wrappers for peer credentials, which only a UNIX socket with peercreds would use."""
            self.server, self.socket = server, sock
            self.rfile, self.wfile = NO_BYTES, None
            self.requests_seen = 0

        def communicate(self):
            try:
                return super().communicate()
            except (OSError, ValueError):  # the client went away mid-answer: nothing to tell it
                return False

        def close(self):
            if self.source is not None:
                self.server.release_source(self.source)
                self.source = None
            with contextlib.suppress(OSError):
                super().close()

    class Server(wsgi.Server):
        ConnectionClass = Connection

        def __init__(self, *args, header_timeout_s: float, max_body_bytes: int, max_threads: int,
                     max_connections_per_ip: int, uncapped=lambda addr: False, **kwargs):
            super().__init__(*args, **kwargs)
            self.header_timeout_s = header_timeout_s
            self.max_body_bytes = max_body_bytes
            self.max_threads = max(max_threads, self.requests.min)
            self.max_connections_per_ip = max_connections_per_ip
            self.uncapped = uncapped
            self.deadlines = Deadlines(on_tick=self.ensure_threads)
            self.gate = Gate(self)
            self.max_request_header_size = MAX_HEAD + 4  # the gate checks first; this is the backstop
            self._sources: dict[str, int] = {}
            self._sources_lock = threading.Lock()

        def admit(self, conn) -> bool:
            """Count a new connection against its source address; False past the cap."""
            addr = conn.remote_addr or ""
            if self.max_connections_per_ip <= 0 or self.uncapped(addr):
                return True
            with self._sources_lock:
                held = self._sources.get(addr, 0)
                if held >= self.max_connections_per_ip:
                    return False
                self._sources[addr] = held + 1
            conn.source = addr
            return True

        def release_source(self, addr: str) -> None:
            with self._sources_lock:
                left = self._sources.get(addr, 0) - 1
                if left > 0:
                    self._sources[addr] = left
                else:
                    self._sources.pop(addr, None)

        def process_conn(self, conn):
            if not getattr(conn, "admitted", False):
                conn.admitted = True
                if not self.admit(conn):
                    self.wsgi_app.refuse(503, "too many connections from this address", conn.remote_addr)
                    conn.close()
                    return
            if getattr(conn, "complete", False):
                conn.complete = False
                super().process_conn(conn)
            else:  # a new connection, or a kept-alive one with bytes: a thread once its request is in
                self.gate.add(conn)

        def hand_over(self, conn) -> None:
            """From the gate: ``conn``'s whole request has arrived, queue it for a thread."""
            conn.complete = True
            self.process_conn(conn)

        def reads_body(self, method: bytes, target: bytes, peer: str | None, forwarded: str) -> bool:
            """Whether the app reads the body of this request (else the gate must not wait for
            it: a 403 for a source outside ``allowed_ips`` is decided before a byte of body)."""
            app = self.wsgi_app
            if method != b"POST" or target.split(b"?", 1)[0] != app.cfg.path.encode():
                return False
            if not app.allowed:
                return True
            client = app.client_addr({"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded or None})
            with contextlib.suppress(ValueError):
                return any(ipaddress.ip_address(client or "") in net for net in app.allowed)
            return False

        def prepare(self):
            super().prepare()
            self.gate.start()

        def ensure_threads(self) -> None:
            """Four times a second: when connections wait for a thread while slow clients hold
            threads, add one thread per slow client (up to ``max_threads``), so real requests
            never wait behind slow ones. Threads busy with real work are not multiplied, and
            once no client is slow the extra threads go, ``GROW_BY`` at a time."""
            pool = self.requests
            extra = len(pool._threads) - pool.min
            if not pool.qsize:
                if extra > 0 and pool.idle > GROW_BY and not self.deadlines.slow(SLOW_READ_S):
                    pool.shrink(min(GROW_BY, extra))
                return
            if pool.idle:
                return
            target = min(self.max_threads, pool.min + self.deadlines.slow(SLOW_READ_S) + GROW_BY)
            if len(pool._threads) < target:
                pool.grow(target - len(pool._threads))

        def error_log(self, msg="", level=logging.INFO, traceback=False):
            """cheroot's own errors: one line, never a traceback (they are about clients)."""
            log.log(max(level, logging.INFO), "http: %s", str(msg).splitlines()[0] if msg else "")

        def stop(self):
            self.deadlines.stop()
            self.gate.stop()  # requests begun go to threads (the drain), silent connections close
            super().stop()

        def put_conn(self, conn):
            for _ in range(KEEPALIVE_MAX_REQUESTS):
                if not self.ready:
                    break
                if not has_bytes(conn.rfile, conn.socket):
                    try:
                        ready, _, _ = select.select([conn.socket], [], [], KEEPALIVE_WAIT_S)
                    except (OSError, ValueError):  # closed meanwhile: let cheroot clean up
                        ready = []
                    if not ready:
                        break
                if self.requests.qsize:  # others wait for a thread: take a place in the queue
                    self.process_conn(conn)
                    return
                if not self.gate.try_now(conn):  # not a whole request yet: the gate holds it
                    return
                try:
                    keep_open = conn.communicate()
                except Exception:  # what the pool does with a failed connection: drop it
                    keep_open = False
                if not keep_open:
                    conn.close()
                    return
            if self.ready and has_bytes(conn.rfile, conn.socket):  # a next request already read
                self.process_conn(conn)
                return
            super().put_conn(conn)  # idle (the selector watches it) or the server is stopping

    return Server


def make_server(config: Config, *, host: str | None = None, port: int | None = None,
                certfile: str | None = None, keyfile: str | None = None):
    """A ready (not started) cheroot server and its writer; ``ConfigError`` for a missing or
    unloadable certificate (checked before anything starts)."""
    tls = config.tls_files(certfile, keyfile)
    writer = Writer(config.ledger_path, ledger_timeout_s=config.receiver.ledger_timeout_s)
    app = ReceiverApp(config, writer)
    bind = (host or config.receiver.host, port if port is not None else config.receiver.port)
    rc = config.receiver
    server = _server_class()(bind, app, numthreads=rc.threads, max=-1,
                             timeout=rc.request_timeout_s, shutdown_timeout=10,
                             # cheroot's default listen backlog is 5: a burst of new connections beyond
                             # it has SYNs dropped and waits a second or more for the retransmission
                             request_queue_size=socket.SOMAXCONN, server_name="iptvsync",
                             header_timeout_s=rc.header_timeout_s, max_body_bytes=rc.max_body_bytes,
                             max_threads=rc.max_threads, max_connections_per_ip=rc.max_connections_per_ip,
                             uncapped=app.is_trusted_proxy)
    if tls:
        cert, key = tls
        server.ssl_adapter = lazy_handshake_adapter()(str(cert), str(key) if key else None)
        server.cert_reloader = CertReloader(server.ssl_adapter, cert, key)
    return server, writer


class ReceiverError(IptvsyncError):
    """The receiver could not start listening (exit code 1)."""


def _bind_reason(text: str) -> str:
    match = re.search(r"\[Errno (\d+)\] ([^)]*)", text)
    if not match:
        return text
    code, reason = int(match.group(1)), match.group(2)
    if code == errno.EADDRINUSE:
        return "the port is already in use (another `iptvsync serve`, or another program)"
    if code == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; use a higher port behind a proxy)"
    return reason


def serve(config: Config, *, host=None, port=None, certfile=None, keyfile=None,
          on_ready: Callable[[str], None] | None = None,
          background: Callable[[threading.Event], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT; in-flight requests finish, then the writer drains."""
    server, writer = make_server(config, host=host, port=port, certfile=certfile, keyfile=keyfile)
    stop = threading.Event()
    reloader = getattr(server, "cert_reloader", None)

    def _stop(signum: int) -> None:
        # server.stop() closes the socket, then waits for in-flight requests: it runs on the
        # signals thread, and the writer is closed only after it returns, so those still commit.
        log.info("signal %d: finishing in-flight requests", signum)
        stop.set()
        server.stop()

    def _hup() -> None:
        if reloader:  # a renewed certificate without a restart (receiver/tls.py)
            reloader.reload("SIGHUP")
        else:  # `systemctl reload` must not kill a plain-HTTP receiver
            log.info("SIGHUP: no TLS certificate to reload")

    signals = SignalThread(_stop, _hup)
    signals.install()
    try:
        server.prepare()
    except OSError as exc:  # cheroot wraps the bind error: "No socket could be created -- (... [Errno 98] ...)"
        signals.close()
        writer.close()
        host_port = f"{server.bind_addr[0]}:{server.bind_addr[1]}"
        raise ReceiverError(f"cannot listen on {host_port} ([receiver] host and port, or --host/--port): "
                            f"{_bind_reason(str(exc))}") from None
    if reloader:
        threading.Thread(target=reloader.watch, args=(stop,), name="cert-watch", daemon=True).start()
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
        if signals.stopping:
            signals.stopped.wait()
        else:
            server.stop()
        signals.close()
        writer.close()
        if worker:
            worker.join(timeout=30)
