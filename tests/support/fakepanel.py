"""The shared machinery of the fake IPTV panels (``xui.py``, ``xtream.py``): a real HTTP
server on loopback, PHP-style form parsing and MySQL-style rows, and the knobs every fake has.

Each fake answers the documented API over real HTTP *with its quirks*, so a client that
would trigger one is caught. Reply bodies that the sources give literally are loaded from
``tests/fixtures/panels/`` (``sample()``), so the fakes and the fixtures cannot drift apart.

GET and POST are merged, POST winning, for all fakes.

Knobs (all fakes): ``.down`` (True → 503, "close" → connection closed unanswered),
``.latency_s``, ``.fail_next(n, mode, action=None)`` with mode "timeout_after_write" (the
write happens, the reply is held ``.stall_s`` seconds), "500", "nonjson", "close" (those
three write nothing), ``.ignore_writes`` (success replies, nothing changes), ``.lines``
(id → row, native Python values), ``.calls`` ((action, params) in order), ``.count(action)``,
``.queries`` (raw URL query strings) and ``.add_line(**columns)`` to seed a line.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

FAIL_MODES = ("timeout_after_write", "500", "nonjson", "close")
XUI_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ"
NGINX = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
PHP_WARNING = "<br />\n<b>Warning</b>:  mysqli_connect(): Too many connections in <b>/home</b><br />\n"
XUI_FLAGS = ("is_stalker", "is_restreamer", "is_trial", "is_isplock", "bypass_ua")


def php_form(pairs: list[tuple[str, str]]) -> dict:
    """PHP's $_GET/$_POST shape: ``a[]`` → list, ``a[k]`` → dict, ``a[k][]`` → dict of lists."""
    out: dict = {}
    for key, value in pairs:
        name = key.split("[", 1)[0]
        subs = re.findall(r"\[([^\]]*)\]", key[len(name):])
        if not subs:
            out[name] = value
        elif subs == [""]:
            out[name] = [*out[name], value] if isinstance(out.get(name), list) else [value]
        else:
            inner = out[name] if isinstance(out.get(name), dict) else {}
            out[name] = inner
            if len(subs) > 1 and subs[1] == "":
                old = inner.get(subs[0])
                inner[subs[0]] = [*old, value] if isinstance(old, list) else [value]
            else:
                inner[subs[0]] = value
    return out


def php_intval(value: object) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, list):
        return int(bool(value))
    match = re.match(r"\s*[+-]?\d+", str(value or ""))
    return int(match.group()) if match else 0


def json_ids(value: object) -> list[int]:
    """json_decode of a JSON text; anything else (a form array, junk) gives []."""
    try:
        decoded = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        decoded = None
    return sorted(php_intval(v) for v in decoded) if isinstance(decoded, list) else []


def generate_string(length: int = 10) -> str:
    return "".join(random.choice(XUI_ALPHABET) for _ in range(length))


class FakePanel:
    """The HTTP server, the call log and the failure knobs shared by every fake."""

    write_actions: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.lines: dict[int, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.queries: list[str] = []  # raw URL query strings, to check no secret is in a URL
        self.down: bool | str = False
        self.latency_s = 0.0
        self.stall_s = 3.0
        self.ignore_writes = False
        self._failures: list[list] = []  # [remaining, mode, action or None]
        self._lock = threading.RLock()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._next_id = 1
        self.inflight = 0
        self.max_inflight = 0  # the most requests it served at once (concurrency tests)
        self.after_write = None  # called with the action after a write is stored, before replying
        self.connections = 0  # TCP connections accepted (keep-alive tests)
        self._open: set[socket.socket] = set()

    def start(self) -> FakePanel:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive with TCP_NODELAY, as nginx in front of a panel does: without it, the
            # reply's body waits ~40 ms behind its headers for the client's delayed ACK.
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.connections += 1
                    fake._open.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._open.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                fake._serve(self)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # nginx listens with a backlog of 511 (its `listen ... backlog=` default); socketserver's
            # 5 drops the handshakes of a 16-connection burst on a busy machine
            request_queue_size = 511

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()  # let stalled replies go
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:  # a stopped panel keeps no kept-alive connection answering
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, n: int = 1, mode: str = "500", action: str | None = None) -> None:
        """Fail the next ``n`` requests (only those for ``action`` when given)."""
        if mode not in FAIL_MODES:
            raise ValueError(f"mode must be one of {FAIL_MODES}")
        self._failures.append([n, mode, action])

    def count(self, action: str) -> int:
        return sum(1 for name, _ in self.calls if name == action)

    def add_line(self, **columns: object) -> int:
        """Seed a line as if made in the panel's UI; returns its id."""
        with self._lock:
            row = self.new_row(self._next_id)
            row.update(columns)
            self.lines[row["id"]] = row
            self._next_id += 1
            return row["id"]

    # -- to be provided by each fake -------------------------------------------------------

    def new_row(self, line_id: int) -> dict:
        raise NotImplementedError

    def action_of(self, request: dict) -> str:
        raise NotImplementedError

    def route(self, path: str, request: dict, client_ip: str) -> tuple[int, dict | str]:
        raise NotImplementedError

    # -- serving ---------------------------------------------------------------------------

    def _take_failure(self, action: str) -> str | None:
        for failure in self._failures:
            if failure[2] in (None, action):
                failure[0] -= 1
                if failure[0] <= 0:
                    self._failures.remove(failure)
                return failure[1]
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        request = php_form(parse_qsl(url.query, keep_blank_values=True))
        for key, value in php_form(parse_qsl(body, keep_blank_values=True)).items():
            both = isinstance(value, dict) and isinstance(request.get(key), dict)
            request[key] = {**request[key], **value} if both else value  # POST wins
        action = self.action_of(request)
        with self._lock:
            self.calls.append((action, request))
            self.queries.append(url.query)
            mode = self._take_failure(action)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            reply = self._answer(handler, url, request, action, mode)
        finally:
            # Counted out before the reply is written: once the client has the reply, its
            # next request may arrive before this thread would get past the write.
            with self._lock:
                self.inflight -= 1
        if reply is None:
            handler.close_connection = True
        else:
            self._reply(handler, *reply)

    def _answer(self, handler: BaseHTTPRequestHandler, url, request: dict, action: str,
                mode: str | None) -> tuple[int, dict | str] | None:
        """The reply to send, or None to drop the connection without one."""
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.down == "close" or mode == "close":
            return None
        if self.down or mode == "500":
            code = 503 if self.down else 500
            return code, NGINX.format(f"{code} Service Unavailable")
        if mode == "nonjson":
            return 200, PHP_WARNING
        with self._lock:
            code, payload = self.route(url.path, request, handler.client_address[0])
        if self.after_write and action in self.write_actions:
            self.after_write(action)
        if mode == "timeout_after_write":
            self._released.wait(self.stall_s)
        return code, payload

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, payload: dict | str) -> None:
        is_json = not isinstance(payload, str)
        data = (json.dumps(payload, separators=(",", ":")) if is_json else payload).encode()
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json" if is_json else "text/html")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout tests)


def mysql_row(row: dict) -> dict:
    """A row as PHP/MySQL sends it: every value a string or null; lists as JSON text."""
    def text(value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, list):
            return json.dumps(value, separators=(",", ":"))
        return str(int(value)) if isinstance(value, bool) else str(value)
    return {key: text(value) for key, value in row.items()}


PANEL_FIXTURES = Path(__file__).parent.parent / "fixtures" / "panels"
#: access_output ids of XC_VM / XC 2.9 (XC29 database.sql:34-36; player_api PA:726-734)
OUTPUT_KEYS = {1: "m3u8", 2: "ts", 3: "rtmp"}


def sample(name: str) -> dict:
    """A reply body exactly as ``tests/fixtures/panels/<name>.json`` gives it (a fresh copy)."""
    return json.loads((PANEL_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def php_add(unix_s: int, count: int, unit: str, timezone: str) -> int:
    """PHP ``strtotime('+<count> <unit>', unix_s)`` in ``timezone``: calendar months and years
    on the wall clock, overflowing like PHP (Jan 31 + 1 month = Mar 3), hours as elapsed time."""
    if unit.startswith("hour"):
        return unix_s + count * 3600
    wall = datetime.fromtimestamp(unix_s, ZoneInfo(timezone)).replace(tzinfo=None)
    if unit.startswith("day"):
        wall += timedelta(days=count)
    else:
        months = count * (12 if unit.startswith("year") else 1)
        index = wall.year * 12 + wall.month - 1 + months
        first = wall.replace(year=index // 12, month=index % 12 + 1, day=1)
        wall = first + timedelta(days=wall.day - 1)  # day 31 of a 30-day month overflows
    return int(wall.replace(tzinfo=ZoneInfo(timezone)).timestamp())


LINE_PASSWORD = "Pw0rdSecretXyz1"  # the password the adapter tests' lines carry


def line_spec(**changes):
    """A LineSpec for adapter tests: a 30-day line with 2 connections and bouquets 1-3."""
    from iptvsync.panels.base import LineSpec

    values = dict(username="iptv000000012", password=LINE_PASSWORD, expires_at=int(time.time()) + 30 * 86400,
                  enabled=True, max_connections=2, bouquets=(1, 2, 3), notes="iptvsync sub 12")
    return LineSpec(**{**values, **changes})
