"""``iptvsync admin serve``: the console on cheroot, a process of its own (never the receiver),
bound to loopback by default, until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

from ..config import Config
from ..errors import IptvsyncError

log = logging.getLogger("iptvsync.admin")


class AdminServerError(IptvsyncError):
    """The console cannot listen where it was asked to."""


# What a request may be (docs/admin.md, "Limits"): the receiver's head limits, a form's body.
MAX_REQUEST_LINE = 8 * 1024  # past it: 414
MAX_HEADERS = 100  # header lines; past them: 431
MAX_HEAD = 16 * 1024  # request line and headers; past it: 431
MAX_BODY = 64 * 1024  # Content-Length past it: 413 (Flask's MAX_CONTENT_LENGTH is the same)
HEAD_TIMEOUT_S = 10.0  # the whole head, however it trickles; then the connection is cut
PER_ADDRESS = 4  # heads being read at once from one address; a fifth cuts the one waiting longest
WATCH_EVERY_S = 0.25


class HeadGuard:
    """The heads being read, with their deadlines: a request thread reads a head only until
    ``HEAD_TIMEOUT_S`` after it started (a watcher thread shuts the socket), and one address
    may keep only ``PER_ADDRESS`` threads reading heads: a new one cuts the one of that address
    that has waited longest (a real request's head arrives at once; behind an SSH tunnel the
    operator shares 127.0.0.1 with any local attacker, so the newcomer is never the one refused).
    Slow or trickling connections cost a thread for seconds at most, and one address never
    holds every thread."""

    def __init__(self, timeout_s: float = HEAD_TIMEOUT_S, per_address: int = PER_ADDRESS):
        self.timeout_s, self.per_address = timeout_s, per_address
        self._lock = threading.Lock()
        self._reading: dict[object, tuple[float, str]] = {}  # conn -> (deadline, address)
        self._per: dict[str, int] = {}
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="admin-head-guard", daemon=True)
        self._watcher.start()

    @contextlib.contextmanager
    def reading(self, conn):
        """While ``conn``'s head is read (its address's oldest head is cut when it has too many)."""
        address = str(conn.remote_addr or "")
        oldest = None
        with self._lock:
            mine = [(due, c) for c, (due, a) in self._reading.items() if a == address and due != float("inf")]
            if len(mine) >= self.per_address:
                oldest = min(mine, key=lambda pair: pair[0])[1]
                self._reading[oldest] = (float("inf"), address)  # cut once
            self._per[address] = self._per.get(address, 0) + 1
            self._reading[conn] = (time.monotonic() + self.timeout_s, address)
        if oldest is not None:
            log.info("admin: %d request heads from %s being read: the oldest is cut", len(mine) + 1, address)
            self._cut(oldest)
        try:
            yield
        finally:
            with self._lock:
                self._reading.pop(conn, None)
                self._per[address] -= 1
                if not self._per[address]:
                    del self._per[address]

    @staticmethod
    def _cut(conn) -> None:
        with contextlib.suppress(OSError):
            conn.socket.shutdown(socket.SHUT_RDWR)  # the reading thread sees the end, closes

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY_S):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, (due, _) in self._reading.items() if due <= now]
                for conn in late:
                    self._reading[conn] = (float("inf"), self._reading[conn][1])  # cut once
            for conn in late:
                log.info("admin: a request head from %s not complete in %.0f s: connection cut",
                         conn.remote_addr, self.timeout_s)
                self._cut(conn)

    def stop(self) -> None:
        self._stop.set()


class _Lines:
    """The head's reader, counting header lines: past ``MAX_HEADERS`` it is too large."""

    def __init__(self, rfile):
        self.rfile, self.lines = rfile, 0

    def readline(self, size=None):
        self.lines += 1
        if self.lines > MAX_HEADERS + 1:  # the empty line ending the head is one too
            from cheroot.errors import MaxSizeExceeded

            raise MaxSizeExceeded
        return self.rfile.readline(size)

    def __getattr__(self, name):
        return getattr(self.rfile, name)


def _request_class():
    from cheroot.errors import MaxSizeExceeded
    from cheroot.server import HTTPRequest

    class Request(HTTPRequest):
        """cheroot's request with the receiver's head limits (414, 431) and the head guard."""

        def parse_request(self):
            with self.server.head_guard.reading(self.conn):
                super().parse_request()

        def read_request_line(self):
            if not super().read_request_line():
                return False
            if self.rfile.bytes_read > MAX_REQUEST_LINE:
                self.simple_response("414 URI Too Long", "The request line is too long.")
                return False
            return True

        def read_request_headers(self):
            sized = self.rfile
            self.rfile = _Lines(sized)
            try:
                return super().read_request_headers()
            except MaxSizeExceeded:
                self.simple_response("431 Request Header Fields Too Large", "The request head is too large.")
                return False
            finally:
                self.rfile = sized

    return Request


def make_server(cfg: Config):
    from cheroot import wsgi

    from . import create_app

    app = create_app(cfg)
    request_class = _request_class()

    class Connection(wsgi.Server.ConnectionClass):
        RequestHandlerClass = request_class

    server = wsgi.Server((cfg.admin.host, cfg.admin.port), app, numthreads=max(1, cfg.admin.threads),
                         server_name="iptvsync-admin")
    server.ConnectionClass = Connection
    server.max_request_header_size = MAX_HEAD
    server.max_request_body_size = MAX_BODY
    server.head_guard = HeadGuard()
    server.timeout = 30
    return server


def serve(cfg: Config, *, on_ready: Callable[[str], None] | None = None) -> None:
    server = make_server(cfg)
    stopper = threading.Thread(target=server.stop, name="stopper", daemon=True)

    def _stop(signum, _frame):
        log.info("signal %d: finishing in-flight requests", signum)
        if stopper.ident is None:
            stopper.start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.prepare()
    except OSError as exc:
        used = f"[Errno {errno.EADDRINUSE}]" in str(exc)
        raise AdminServerError(f"cannot listen on {cfg.admin.host}:{cfg.admin.port} ([admin] host and port, or"
                               f" --host/--port): {'the port is already in use' if used else exc}") from None
    host, port = server.bind_addr[:2]
    url = f"http://{host}:{port}"
    log.info("admin console listening on %s", url)
    if on_ready:
        on_ready(url)
    try:
        server.serve()
    finally:
        server.head_guard.stop()
        if stopper.ident is None:
            server.stop()
        else:
            stopper.join()
