"""Fake IPTV panels on loopback: XUI.one admin, XUI.one reseller, Xtream Codes v2 ``api.php``.

Each fake answers the documented API over real HTTP *with its quirks*, so a client that
would trigger one is caught. Reply shapes follow ``tests/fixtures/panels/``.

XUI (XC_VM's ``processLine``): ``edit_line`` is not partial (absent max_connections/enabled/
admin_enabled → 1, absent flag keys → 0, absent exp_date → NULL = never expires, absent
bouquets → [], absent username/password → regenerated, absent allowed_ips/ua → []); any
``is_trial``… key, even "0", sets the flag; ``bouquets_selected`` must be a JSON text (a form
array gives []); ``exp_date`` is parsed as ``Y-m-d H:i:s`` (or ``Y-m-d``, ``@unix``) in the
API user's ``timezone``; usernames are unique (STATUS_EXISTS_USERNAME, echoing the request
with its password); ``get_lines`` ``search[value]`` is a case-insensitive LIKE over username,
password, exp date, max_connections and both notes; a bad key is HTTP 200
``{"status":"STATUS_FAILURE","error":"Invalid API key."}``.
Reseller: accepted keys only; ``package`` required; credits deducted after the write;
``edit_line`` with ``package`` extends from the current expiry if active, else from now, and
charges again; STATUS_INSUFFICIENT_CREDITS / STATUS_INVALID_PACKAGE / STATUS_NO_PERMISSIONS;
our username/password ignored (generated) unless ``allow_change_username``/``_password``;
only the reseller's own lines are visible.
XC v2: only the username+password pair is unique (same username, other password → a second
row); an unknown ``user_data`` key (``output_formats`` included) → PARAMETER ERROR; missing
``admin_notes``/``reseller_notes`` → PARAMETER ERROR (``strict_notes``, the MySQL strict-mode
assumption); ``exp_date`` goes through intval; a non-JSON or array ``bouquet`` → []; IP
FORBIDDEN / KEY WRONG as ``{"result":false,"0":…}``; ``edit`` answers ``{"result":true}`` even
when nothing changed; NOT EXISTS. ``allowed_ips`` is the complete list (the real panel also
always allows 127.0.0.1; here loopback must be listed, so tests can see IP FORBIDDEN).
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
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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


class FakeXuiAdmin(FakePanel):
    """XUI.one admin API at ``/<access_code>/`` (XC_VM behaviour)."""

    api_user = {"id": 1, "username": "admin", "member_group_id": 1}
    actions = ("user_info", "get_lines", "get_line", "create_line", "edit_line", "delete_line",
               "enable_line", "disable_line", "ban_line", "unban_line")
    write_actions = frozenset({"create_line", "edit_line", "delete_line", "enable_line",
                               "disable_line", "ban_line", "unban_line"})
    list_columns = ("id", "member_id", "last_activity", "last_activity_array", "username",
                    "password", "exp_date", "admin_enabled", "is_restreamer", "enabled",
                    "admin_notes", "reseller_notes", "max_connections", "is_trial")

    def __init__(self, api_key: str = "k", access_code: str = "abc", timezone: str = "UTC"):
        super().__init__()
        self.api_key, self.access_code, self.timezone = api_key, access_code, timezone

    @property
    def url(self) -> str:
        return f"{self.root}/{self.access_code}"

    def new_row(self, line_id: int) -> dict:
        return {"id": line_id, "member_id": self.api_user["id"], "username": generate_string(),
                "password": generate_string(), "exp_date": None, "admin_enabled": 1, "enabled": 1,
                "admin_notes": "", "reseller_notes": "", "bouquet": [], "allowed_outputs": [1, 2],
                "max_connections": 1, "is_restreamer": 0, "is_trial": 0, "is_mag": 0, "is_e2": 0,
                "is_stalker": 0, "is_isplock": 0, "bypass_ua": 0, "allowed_ips": [],
                "allowed_ua": [], "created_at": int(time.time()), "pair_id": None,
                "force_server_id": 0, "forced_country": "", "isp_desc": "", "as_number": None,
                "package_id": None, "contact": "", "last_activity": None,
                "last_activity_array": None}

    def action_of(self, request: dict) -> str:
        return str(request.get("action", ""))

    def visible(self, row: dict) -> bool:
        return True

    def route(self, path: str, request: dict, client_ip: str) -> tuple[int, dict | str]:
        if path.rstrip("/") != f"/{self.access_code}":
            return 404, NGINX.format("404 Not Found")
        if not self.api_key or request.get("api_key") != self.api_key:
            return 200, {"status": "STATUS_FAILURE", "error": "Invalid API key."}
        action = self.action_of(request)
        if action not in self.actions:
            return 200, {"status": "STATUS_FAILURE", "error": "Invalid action."}
        if self.ignore_writes and action in self.write_actions:
            return 200, self.pretend_success(action, request)
        return 200, getattr(self, f"do_{action}")(request)

    def pretend_success(self, action: str, request: dict) -> dict:
        if action not in ("create_line", "edit_line"):
            return {"status": "STATUS_SUCCESS"}
        row = self.lines.get(php_intval(request.get("id"))) or self.new_row(self._next_id)
        if action == "create_line":
            row = {**row, "username": request.get("username") or row["username"],
                   "password": request.get("password") or row["password"]}
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)}

    def line(self, request: dict) -> dict | None:
        row = self.lines.get(php_intval(request.get("id")))
        return row if row is not None and self.visible(row) else None

    def do_user_info(self, request: dict) -> dict:
        data = {**self.api_user, "api_key": self.api_key, "timezone": self.timezone}
        return {"status": "STATUS_SUCCESS", "data": mysql_row(data), "permissions": {}}

    def do_get_line(self, request: dict) -> dict:
        row = self.line(request)
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)} if row else FAILURE

    def do_get_lines(self, request: dict) -> dict:
        search = request.get("search")
        term = str(search.get("value", "")).lower() if isinstance(search, dict) else ""
        rows = [r for r in self.lines.values() if self.visible(r) and not (r["is_mag"] or r["is_e2"])]
        hits = [r for r in rows if any(term in str(v).lower() for v in self.searched(r))]
        start = php_intval(request.get("start", 0))
        limit = php_intval(request.get("limit", 50))
        page = [{**{k: row[k] for k in self.list_columns}, "active_connections": 0}
                for row in hits[start:start + limit]]
        return {"status": "STATUS_SUCCESS", "data": [mysql_row(r) for r in page],
                "recordsTotal": str(len(rows)), "recordsFiltered": str(len(hits))}

    def searched(self, row: dict) -> list:
        expiry = self.format_date(row["exp_date"]) if row["exp_date"] is not None else ""
        return [row["username"], row["password"], expiry, row["max_connections"],
                row["reseller_notes"], row["admin_notes"]]

    def format_date(self, unix_s: int) -> str:
        return datetime.fromtimestamp(unix_s, ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S")

    def parse_date(self, text: str) -> int | None:
        if text.startswith("@") and text[1:].isdigit():
            return int(text[1:])
        for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                parsed = datetime.strptime(text, form)
            except ValueError:
                continue
            return int(parsed.replace(tzinfo=ZoneInfo(self.timezone)).timestamp())
        return None

    def do_create_line(self, request: dict) -> dict:
        return self.process_line(request, None)

    def do_edit_line(self, request: dict) -> dict:
        row = self.line(request)
        return self.process_line(request, row) if row else FAILURE

    def process_line(self, data: dict, current: dict | None) -> dict:
        row = dict(current) if current else self.new_row(self._next_id)
        echo = {k: v for k, v in data.items() if k not in ("api_key", "action")}
        username = data.get("username") or generate_string()
        if any(r["username"] == username and r["id"] != row["id"] for r in self.lines.values()):
            return {"status": "STATUS_EXISTS_USERNAME", "data": echo}
        row["username"], row["password"] = username, data.get("password") or generate_string()
        for column in ("max_connections", "enabled", "admin_enabled"):
            row[column] = php_intval(data[column]) if column in data else 1
        for flag in XUI_FLAGS:
            row[flag] = 1 if flag in data else 0  # isset(), whatever the value
        row["bouquet"] = json_ids(data.get("bouquets_selected"))
        if "exp_date" in data and "no_expire" not in data:
            if data["exp_date"] not in ("", "1970-01-01"):
                expiry = self.parse_date(str(data["exp_date"]))
                if expiry is None:
                    return {"status": "STATUS_INVALID_DATE", "data": echo}
                row["exp_date"] = expiry
        else:
            row["exp_date"] = None  # never expires
        row["member_id"] = php_intval(data.get("member_id", self.api_user["id"]))
        for column in ("allowed_ips", "allowed_ua"):
            value = data.get(column)
            row[column] = value if isinstance(value, list) else [value] if value else []
        if isinstance(data.get("access_output"), list):
            row["allowed_outputs"] = [php_intval(v) for v in data["access_output"]]
        for column in ("admin_notes", "reseller_notes", "contact", "forced_country",
                       "force_server_id"):
            if column in data:
                row[column] = data[column]
        return self.store(row)

    def store(self, row: dict) -> dict:
        if row["id"] not in self.lines:
            self._next_id += 1
        self.lines[row["id"]] = row
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)}

    def set_column(self, request: dict, column: str, value: int) -> dict:
        row = self.line(request)
        if row is None:
            return FAILURE
        row[column] = value
        return {"status": "STATUS_SUCCESS"}

    def do_enable_line(self, request: dict) -> dict:
        return self.set_column(request, "enabled", 1)

    def do_disable_line(self, request: dict) -> dict:
        return self.set_column(request, "enabled", 0)

    def do_ban_line(self, request: dict) -> dict:
        return self.set_column(request, "admin_enabled", 0)

    def do_unban_line(self, request: dict) -> dict:
        return self.set_column(request, "admin_enabled", 1)

    def do_delete_line(self, request: dict) -> dict:
        row = self.line(request)
        if row is None:
            return FAILURE
        del self.lines[row["id"]]
        return {"status": "STATUS_SUCCESS"}


FAILURE = {"status": "STATUS_FAILURE"}


class FakeXuiReseller(FakeXuiAdmin):
    """XUI.one reseller API: packages cost credits; only the reseller's own lines exist."""

    api_user = {"id": 2, "username": "reseller", "member_group_id": 2}
    actions = ("user_info", "packages", "get_lines", "get_line", "create_line", "edit_line",
               "delete_line", "enable_line", "disable_line")
    accepted_keys = frozenset({"edit", "trial", "bouquets_selected", "pair_id", "username",
                               "password", "member_id", "package", "contact", "reseller_notes",
                               "allowed_ips", "allowed_ua", "bypass_ua", "is_isplock", "isp_clear"})

    def __init__(self, api_key: str = "k", access_code: str = "res", credits: int = 10,
                 packages: dict | None = None, allow_change_username: bool = True,
                 allow_change_password: bool = True, can_create_lines: bool = True):
        super().__init__(api_key, access_code)
        self.credits = credits
        self.packages = {
            int(pid): {"days": 30, "credits": 1, "max_connections": 1, "bouquets": [1, 2, 3],
                       "is_line": True, **spec}
            for pid, spec in (packages if packages is not None else {7: {}}).items()
        }
        self.allow_change_username = allow_change_username
        self.allow_change_password = allow_change_password
        self.can_create_lines = can_create_lines

    def new_row(self, line_id: int) -> dict:
        return {**super().new_row(line_id), "member_id": self.api_user["id"]}

    def visible(self, row: dict) -> bool:
        return row["member_id"] == self.api_user["id"]

    def do_user_info(self, request: dict) -> dict:
        reply = super().do_user_info(request)
        reply["data"]["credits"] = str(self.credits)
        return reply

    def do_packages(self, request: dict) -> dict:
        return {"status": "STATUS_SUCCESS", "data": [
            mysql_row({"id": pid, "official_credits": p["credits"], "official_duration": p["days"],
                       "official_duration_in": "days", "is_line": int(p["is_line"])})
            for pid, p in self.packages.items()]}

    def package_problem(self, data: dict) -> tuple[dict | None, str | None]:
        """The package asked for, or the status refusing it (checked before any write)."""
        package = self.packages.get(php_intval(data.get("package")))
        if package is None:
            return None, "STATUS_INVALID_PACKAGE"
        if not package["is_line"]:
            return None, "STATUS_INVALID_TYPE"
        if package["credits"] > self.credits:
            return None, "STATUS_INSUFFICIENT_CREDITS"
        return package, None

    def apply_package(self, row: dict, package: dict, base: float) -> None:
        row["exp_date"] = int(base) + package["days"] * 86400
        row["max_connections"] = package["max_connections"]
        row["bouquet"] = list(package["bouquets"])

    def do_create_line(self, request: dict) -> dict:
        if not self.can_create_lines:
            return {"status": "STATUS_NO_PERMISSIONS"}
        data = {k: v for k, v in request.items() if k in self.accepted_keys}
        if data.get("trial"):
            return {"status": "STATUS_NO_TRIALS", "data": data}
        package, problem = self.package_problem(data)
        if problem:
            return {"status": problem, "data": data}
        row = self.new_row(self._next_id)  # generated credentials unless the group may choose
        if self.allow_change_username and data.get("username"):
            row["username"] = data["username"]
        if self.allow_change_password and data.get("password"):
            row["password"] = data["password"]
        if any(r["username"] == row["username"] for r in self.lines.values()):
            return {"status": "STATUS_EXISTS_USERNAME", "data": data}
        self.apply_package(row, package, time.time())
        row["package_id"] = php_intval(data["package"])
        for column in ("reseller_notes", "contact"):
            row[column] = data.get(column, "")
        reply = self.store(row)
        self.credits -= package["credits"]  # charged after the write
        return reply

    def do_edit_line(self, request: dict) -> dict:
        row = self.line(request)
        if row is None:
            return FAILURE
        data = {k: v for k, v in request.items() if k in self.accepted_keys}
        package = None
        if "package" in data:
            package, problem = self.package_problem(data)
            if problem:
                return {"status": problem, "data": data}
            now = time.time()
            active = row["exp_date"] is not None and now <= row["exp_date"]
            self.apply_package(row, package, row["exp_date"] if active else now)
        if self.allow_change_username and data.get("username"):
            row["username"] = data["username"]
        if self.allow_change_password and data.get("password"):
            row["password"] = data["password"]
        for column in ("reseller_notes", "contact"):
            if column in data:
                row[column] = data[column]
        if package is not None:
            self.credits -= package["credits"]
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)}


XC_COLUMNS = frozenset({
    "member_id", "username", "password", "exp_date", "admin_enabled", "enabled", "admin_notes",
    "reseller_notes", "bouquet", "max_connections", "is_restreamer", "allowed_ips", "allowed_ua",
    "is_trial", "created_at", "created_by", "pair_id", "is_mag", "is_e2", "force_server_id",
    "is_isplock", "as_number", "isp_desc", "forced_country", "is_stalker", "bypass_ua",
    "play_token"})
XC_INT_COLUMNS = frozenset({"member_id", "admin_enabled", "enabled", "max_connections",
                            "is_restreamer", "is_trial", "is_mag", "is_e2", "is_stalker",
                            "is_isplock", "bypass_ua", "force_server_id"})
XC_OUTPUTS = {"m3u8": ("1", "HLS", "m3u8"), "ts": ("2", "MPEGTS", "ts"), "rtmp": ("3", "RTMP", "")}


class FakeXtreamCodes(FakePanel):
    """Xtream Codes v2 ``wwwdir/api.php`` (action=user, sub=info|create|edit)."""

    write_actions = frozenset({"user.create", "user.edit"})

    def __init__(self, api_pass: str | None = None, allowed_ips: list[str] | None = None,
                 strict_notes: bool = True):
        super().__init__()
        self.api_pass, self.allowed_ips, self.strict_notes = api_pass, allowed_ips, strict_notes

    @property
    def url(self) -> str:
        return self.root

    def new_row(self, line_id: int) -> dict:
        return {"id": line_id, "member_id": None, "username": generate_string(),
                "password": generate_string(), "exp_date": None, "admin_enabled": 1, "enabled": 1,
                "admin_notes": "", "reseller_notes": "", "bouquet": [], "max_connections": 1,
                "is_restreamer": 0, "allowed_ips": [], "allowed_ua": [], "is_trial": 0,
                "created_at": int(time.time()), "created_by": 0, "pair_id": None, "is_mag": 0,
                "is_e2": 0, "force_server_id": 0, "is_isplock": 0, "as_number": None,
                "isp_desc": None, "forced_country": "", "is_stalker": 0, "bypass_ua": 0,
                "play_token": ""}

    def action_of(self, request: dict) -> str:
        return f"{request.get('action', '')}.{request.get('sub', '')}"

    def route(self, path: str, request: dict, client_ip: str) -> tuple[int, dict | str]:
        if path != "/api.php":
            return 404, NGINX.format("404 Not Found")
        if self.allowed_ips is not None and client_ip not in self.allowed_ips:
            return 200, {"result": False, "0": "IP FORBIDDEN"}
        if self.api_pass and request.get("api_pass") != self.api_pass:
            return 200, {"result": False, "0": "KEY WRONG"}
        handler = {"user.create": self.create, "user.edit": self.edit,
                   "user.info": self.info}.get(self.action_of(request))
        return 200, handler(request) if handler else {"result": False}

    def find(self, request: dict) -> dict | None:
        return next((r for r in self.lines.values() if r["username"] == request.get("username")
                     and r["password"] == request.get("password")), None)

    def columns(self, request: dict) -> dict | None:
        """user_data with PHP's key scrubbing; None when a key is not a column (SQL error)."""
        data = request.get("user_data")
        data = data if isinstance(data, dict) else {}
        columns = {re.sub(r"[^a-zA-Z0-9_]+", "", k): v for k, v in data.items()}
        return columns if set(columns) <= XC_COLUMNS else None

    def create(self, request: dict) -> dict:
        columns = self.columns(request)
        missing_notes = not {"admin_notes", "reseller_notes"} <= set(columns or {})
        if columns is None or (self.strict_notes and missing_notes):
            return {"result": False, "error": "PARAMETER ERROR"}
        row = self.new_row(self._next_id)  # username/password generated only when absent
        for column, value in columns.items():
            row[column] = php_intval(value) if column in XC_INT_COLUMNS else value
        row["exp_date"] = php_intval(columns["exp_date"]) if columns.get("exp_date") else None
        row["bouquet"] = json_ids(columns.get("bouquet"))
        for column in ("allowed_ips", "allowed_ua"):
            row[column] = json.loads(row[column]) if _is_json_list(row[column]) else []
        row["created_at"], row["created_by"] = int(time.time()), 0
        if self.find(row) is not None:  # only the pair is unique
            return {"result": False, "error": "EXISTS"}
        if not self.ignore_writes:
            self.lines[row["id"]] = row
        self._next_id += 1
        return {"result": True, "created_id": row["id"], "username": row["username"],
                "password": row["password"]}

    def edit(self, request: dict) -> dict:
        if not request.get("username") or not request.get("password"):
            return {"result": False, "error": "PARAMETER ERROR (user/pass)"}
        row = self.find(request)
        if row is None:
            return {"result": False, "error": "NOT EXISTS"}
        columns = self.columns(request)
        if columns is None:
            return {"result": False, "error": "PARAMETER ERROR"}
        changes = {}
        for column, value in columns.items():
            if column == "bouquet":
                # A JSON text is stored as sent; a form array is JSON-encoded as strings.
                value = json.loads(value) if _is_json_list(value) else value
            elif column == "exp_date":
                value = php_intval(value) if value not in ("", None) else None
            elif column in XC_INT_COLUMNS:
                value = php_intval(value)
            changes[column] = value
        if not self.ignore_writes:
            row.update(changes)
        return {"result": True}  # also when nothing changed

    def info(self, request: dict) -> dict:
        if not request.get("username") or not request.get("password"):
            return {"result": False, "error": "PARAMETER ERROR (user/pass)"}
        row = self.find(request)
        if row is None:
            return {"result": False, "error": "NOT EXISTS"}
        info = mysql_row({k: v for k, v in row.items()
                          if k not in ("bouquet", "allowed_ips", "allowed_ua")})
        bouquet = row["bouquet"] if isinstance(row["bouquet"], list) else json_ids(row["bouquet"])
        info.update(bouquet=bouquet, allowed_ips=row["allowed_ips"], allowed_ua=row["allowed_ua"],
                    active_cons="0", pair_line_info=[], con_isp_name=None, con_isp_type=None,
                    isp_is_server=0, isp_violate=0, output_formats={
                        key: {"access_output_id": oid, "output_name": name, "output_key": key,
                              "output_ext": ext} for key, (oid, name, ext) in XC_OUTPUTS.items()})
        return {"result": True, "user_info": info}


def _is_json_list(value: object) -> bool:
    try:
        return isinstance(value, str) and isinstance(json.loads(value), list)
    except ValueError:
        return False


LINE_PASSWORD = "Pw0rdSecretXyz1"  # the password the adapter tests' lines carry


def line_spec(**changes):
    """A LineSpec for adapter tests: a 30-day line with 2 connections and bouquets 1-3."""
    from iptvsync.panels import LineSpec

    values = dict(username="iptv000000012", password=LINE_PASSWORD, expires_at=int(time.time()) + 30 * 86400,
                  enabled=True, max_connections=2, bouquets=(1, 2, 3), notes="iptvsync sub 12")
    return LineSpec(**{**values, **changes})
