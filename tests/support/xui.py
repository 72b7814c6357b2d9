"""Fake XUI.one admin and reseller APIs on loopback (XC_VM behaviour), plus ``player_api.php``.

Every quirk below cites the XC_VM source (github.com/Vateron-Media/XC_VM @ 0284fd7, ``src/``);
"live" marks what a run of the real panel on loopback showed. Reply bodies that the sources
give literally come from ``tests/fixtures/panels/`` (``sample``).

XUI (XC_VM's ``processLine``): ``edit_line`` is not partial (absent max_connections/enabled/
admin_enabled → 1, absent flag keys → 0, absent exp_date → NULL = never expires, absent
bouquets → [], absent username/password → regenerated, absent allowed_ips/ua → []); any
``is_trial``… key, even "0", sets the flag; ``bouquets_selected`` must be a JSON text (a form
array gives []); ``access_output`` that is not a form array stores ``[]`` (no output: live
playback refused); ``exp_date`` is PHP ``DateTime`` text read in the API user's timezone, or
the panel's default when the user has none; usernames are unique (STATUS_EXISTS_USERNAME,
echoing the request with its password); ``get_lines`` ``search[value]`` is a case-insensitive
LIKE over username, password, exp date, max_connections and both notes; a bad key is HTTP 200
``{"status":"STATUS_FAILURE","error":"Invalid API key."}``.
Reseller: accepted keys only; ``package`` required; credits deducted after the write;
``edit_line`` with ``package`` extends like ``strtotime('+N unit', exp)`` from the current
expiry if active, else from now, and charges again; notes and contact not re-sent are wiped;
``get_lines`` finds nothing through the API; STATUS_INSUFFICIENT_CREDITS / STATUS_INVALID_TYPE /
STATUS_INVALID_PACKAGE / STATUS_NO_PERMISSIONS; our username/password ignored (generated)
unless ``allow_change_username``/``_password``; only the reseller's own lines are visible.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from support.fakepanel import (
    NGINX,
    OUTPUT_KEYS,
    XUI_FLAGS,
    FakePanel,
    generate_string,
    json_ids,
    mysql_row,
    php_add,
    php_intval,
    sample,
)

#: What nginx answers for any refused player_api login: XC_VM src/www/stream/init.php:175-206
#: (generateError -> generate404), live: HTTP 404 with the nginx page.
PLAYER_REFUSED = (404, NGINX.format("404 Not Found"))
#: A PHP fatal error with display_errors off: HTTP 200 and an empty body (live on XC_VM).
CRASHED = ""
_OFFSET = re.compile(r"(Z|UTC|[+-]\d{2}:?\d{2})$")


class FakeXuiAdmin(FakePanel):
    """XUI.one admin API at ``/<access_code>/`` (XC_VM behaviour), ``/player_api.php`` beside it.

    ``timezone`` is the API user's ``users.timezone`` (None: the panel's ``default_timezone``
    applies, XC_VM src/includes/xc_vm.php:47-49 and api/admin/index.php:699-701).
    ``enable_cache``: player_api answers from a snapshot that create/edit refresh and
    enable/disable/ban do not (xc_vm.php:3539-3549, api/admin/index.php:754-781).
    """

    api_user = {"id": 1, "username": "admin", "member_group_id": 1}
    actions = ("user_info", "get_settings", "get_lines", "get_line", "create_line", "edit_line",
               "delete_line", "enable_line", "disable_line", "ban_line", "unban_line")
    write_actions = frozenset({"create_line", "edit_line", "delete_line", "enable_line",
                               "disable_line", "ban_line", "unban_line"})
    list_columns = ("id", "member_id", "last_activity", "last_activity_array", "username",
                    "password", "exp_date", "admin_enabled", "is_restreamer", "enabled",
                    "admin_notes", "reseller_notes", "max_connections", "is_trial")

    def __init__(self, api_key: str = "k", access_code: str = "abc",
                 timezone: str | None = "America/Sao_Paulo",
                 default_timezone: str = "Europe/London", enable_cache: bool = False):
        super().__init__()
        self.api_key, self.access_code = api_key, access_code
        self.timezone, self.default_timezone = timezone, default_timezone
        self.enable_cache = enable_cache
        self.cache: dict[int, dict] = {}  # line id -> the row player_api sees when cached

    @property
    def url(self) -> str:
        return f"{self.root}/{self.access_code}"

    @property
    def zone(self) -> str:
        """The zone PHP's DateTime and strtotime run in for this API user."""
        return self.timezone or self.default_timezone

    def new_row(self, line_id: int) -> dict:
        # A line made in the panel's form has every output ticked (XC_VM src/admin/line.php:253-255).
        return {"id": line_id, "member_id": self.api_user["id"], "username": generate_string(),
                "password": generate_string(), "exp_date": None, "admin_enabled": 1, "enabled": 1,
                "admin_notes": "", "reseller_notes": "", "bouquet": [], "allowed_outputs": [1, 2, 3],
                "max_connections": 1, "is_restreamer": 0, "is_trial": 0, "is_mag": 0, "is_e2": 0,
                "is_stalker": 0, "is_isplock": 0, "bypass_ua": 0, "allowed_ips": [],
                "allowed_ua": [], "created_at": int(time.time()), "pair_id": None,
                "force_server_id": 0, "forced_country": "", "isp_desc": "", "as_number": None,
                "package_id": None, "contact": "", "last_activity": None,
                "last_activity_array": None}

    def add_line(self, **columns: object) -> int:
        line_id = super().add_line(**columns)
        self.cache[line_id] = dict(self.lines[line_id])
        return line_id

    def action_of(self, request: dict) -> str:
        return str(request.get("action", ""))

    def visible(self, row: dict) -> bool:
        return True

    def route(self, path: str, request: dict, client_ip: str) -> tuple[int, dict | str]:
        if path == "/player_api.php":
            return self.player_api(request)
        if path.rstrip("/") != f"/{self.access_code}":
            return 404, NGINX.format("404 Not Found")
        if not self.api_key or request.get("api_key") != self.api_key:
            return 200, sample("xui-invalid-api-key")
        action = self.action_of(request)
        if action not in self.actions:
            return 200, sample("xui-invalid-action")
        if self.ignore_writes and action in self.write_actions:
            return 200, self.pretend_success(action, request)
        return 200, getattr(self, f"do_{action}")(request)

    def pretend_success(self, action: str, request: dict) -> dict:
        if action not in ("create_line", "edit_line"):
            return sample("xui-success")
        row = self.lines.get(php_intval(request.get("id"))) or self.new_row(self._next_id)
        if action == "create_line":
            row = {**row, "username": request.get("username") or row["username"],
                   "password": request.get("password") or row["password"]}
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)}

    def line(self, request: dict) -> dict | None:
        row = self.lines.get(php_intval(request.get("id")))
        return row if row is not None and self.visible(row) else None

    # -- player_api.php (upstream d0918ce: PA :65-95, :688-699, :723-734) ---------------------

    def player_api(self, request: dict) -> tuple[int, dict | str]:
        username, password = request.get("username"), request.get("password")
        if not username or not password:
            return PLAYER_REFUSED  # NO_CREDENTIALS (PA :65, :74)
        rows = self.cache.values() if self.enable_cache else self.lines.values()
        row = next((r for r in rows if r["username"] == username and r["password"] == password), None)
        if row is None:
            return PLAYER_REFUSED  # INVALID_CREDENTIALS (PA :723)
        expiry = row["exp_date"]
        active = row["admin_enabled"] == 1 and row["enabled"] == 1 and (
            expiry is None or time.time() < expiry)  # PA :87
        if not active:
            return PLAYER_REFUSED  # BANNED | DISABLED | EXPIRED (PA :89-95)
        reply = sample("player-api-xui")
        info = reply["user_info"]
        info.update(username=row["username"], password=row["password"],
                    exp_date=None if expiry is None else str(expiry), is_trial=row["is_trial"],
                    created_at=str(row["created_at"]), max_connections=str(row["max_connections"]),
                    allowed_output_formats=[OUTPUT_KEYS[o] for o in row["allowed_outputs"]
                                            if o in OUTPUT_KEYS])
        reply["server_info"].update(timezone=self.default_timezone, timestamp_now=int(time.time()))
        return 200, reply

    # -- admin API -------------------------------------------------------------------------

    def do_user_info(self, request: dict) -> dict:
        data = {**self.api_user, "api_key": self.api_key, "timezone": self.timezone}
        return {"status": "STATUS_SUCCESS", "data": mysql_row(data), "permissions": {}}

    def do_get_settings(self, request: dict) -> dict:
        # api/admin/index.php:565-566, 1896-1898: the settings row (admin only).
        return {"status": "STATUS_SUCCESS", "data": mysql_row({
            "default_timezone": self.default_timezone, "enable_cache": int(self.enable_cache),
            "cache_changes": 1, "force_epg_timezone": 0})}

    def do_get_line(self, request: dict) -> dict:
        row = self.line(request)
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)} if row else sample("xui-failure")

    def do_get_lines(self, request: dict) -> dict:
        search = request.get("search")
        term = str(search.get("value", "")).lower() if isinstance(search, dict) else ""
        rows = [r for r in self.lines.values() if self.visible(r) and not (r["is_mag"] or r["is_e2"])]
        hits = [r for r in rows if any(term in str(v).lower() for v in self.searched(r))]
        start = php_intval(request.get("start", 0))
        limit = php_intval(request.get("limit", 50))
        page = [{**{k: row[k] for k in self.list_columns}, "active_connections": 0}
                for row in hits[start:start + limit]]
        # api/admin/table.php:136-146: recordsTotal counts the search's matches, and in API
        # mode recordsFiltered is min(that, limit) (live on XC_VM: 130 lines, limit 100 -> 100).
        return {"status": "STATUS_SUCCESS", "data": [mysql_row(r) for r in page],
                "recordsTotal": str(len(hits)), "recordsFiltered": str(min(len(hits), limit))}

    def searched(self, row: dict) -> list:
        expiry = self.format_date(row["exp_date"]) if row["exp_date"] else ""
        return [row["username"], row["password"], expiry, row["max_connections"],
                row["reseller_notes"], row["admin_notes"]]

    def format_date(self, unix_s: int) -> str:
        return datetime.fromtimestamp(unix_s, ZoneInfo(self.zone)).strftime("%Y-%m-%d %H:%M:%S")

    def parse_date(self, text: str) -> int | None:
        """PHP ``new DateTime($text)`` (admin_api.php:6907-6919): ``@unix`` and texts with an
        offset, ``Z`` or ``UTC`` ignore the zone; wall-clock text is read in ``self.zone``;
        bare digits fail (live: STATUS_INVALID_DATE)."""
        text = text.strip()
        if text.startswith("@") and text[1:].isdigit():
            return int(text[1:])
        offset = _OFFSET.search(text)
        wall_text = text[:offset.start()].strip().rstrip("T") if offset else text
        try:
            wall = datetime.fromisoformat(wall_text)
        except ValueError:
            return None
        if len(wall_text) < 10 or wall_text.isdigit():
            return None
        if offset and offset.group() in ("Z", "UTC"):
            return int(wall.replace(tzinfo=UTC).timestamp())
        if offset:
            return int(datetime.fromisoformat(wall_text + offset.group()).timestamp())
        return int(wall.replace(tzinfo=ZoneInfo(self.zone)).timestamp())

    def do_create_line(self, request: dict) -> dict:
        return self.process_line(request, None)

    def do_edit_line(self, request: dict) -> dict:
        row = self.line(request)
        return self.process_line(request, row) if row else sample("xui-failure")

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
            if data["exp_date"] == "":
                # admin_api.php:6908 skips the parse and overwriteData (admin.php:763-775)
                # copies "" over the row: stored as 0, expired (live: "exp_date":0).
                row["exp_date"] = 0
            elif data["exp_date"] != "1970-01-01":
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
        # admin_api.php:6948-6957: only a form array counts; absent, a scalar or a JSON text
        # all store "[]" with STATUS_SUCCESS, on create and on edit (live).
        outputs = data.get("access_output")
        row["allowed_outputs"] = [php_intval(v) for v in outputs] if isinstance(outputs, list) else []
        for column in ("admin_notes", "reseller_notes", "contact", "forced_country",
                       "force_server_id"):
            if column in data:
                row[column] = data[column]
        return self.store(row)

    def store(self, row: dict) -> dict:
        if row["id"] not in self.lines:
            self._next_id += 1
        self.lines[row["id"]] = row
        self.cache[row["id"]] = dict(row)  # processLine queues update_line (admin_api.php:6968)
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)}

    def set_column(self, request: dict, column: str, value: int) -> dict:
        # A plain UPDATE, no cache refresh (api/admin/index.php:754-781).
        row = self.line(request)
        if row is None:
            return sample("xui-failure")
        row[column] = value
        return sample("xui-success")

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
            return sample("xui-failure")
        del self.lines[row["id"]]
        self.cache.pop(row["id"], None)
        return sample("xui-success")


class FakeXuiReseller(FakeXuiAdmin):
    """XUI.one reseller API: packages cost credits; only the reseller's own lines exist.

    ``packages``: id -> overrides of one package (``duration``/``unit`` as
    ``official_duration``/``official_duration_in``, ``credits``, ``outputs``, ``bouquets``…).
    ``api_search``: False as on XC_VM, where ``get_lines`` through the API finds nothing.
    """

    api_user = {"id": 2, "username": "reseller", "member_group_id": 2}
    actions = ("user_info", "packages", "get_lines", "get_line", "create_line", "edit_line",
               "delete_line", "enable_line", "disable_line")
    # ResellerAPI::processData drops every other key (reseller_api.php:12-19).
    accepted_keys = frozenset({"edit", "trial", "bouquets_selected", "pair_id", "username",
                               "password", "member_id", "package", "contact", "reseller_notes",
                               "allowed_ips", "allowed_ua", "bypass_ua", "is_isplock", "isp_clear"})

    def __init__(self, api_key: str = "k", access_code: str = "res", credits: int = 10,
                 packages: dict | None = None, allow_change_username: bool = True,
                 allow_change_password: bool = True, can_create_lines: bool = True,
                 timezone: str | None = None, api_search: bool = False,
                 allow_change_bouquets: bool = False):
        super().__init__(api_key, access_code, timezone=timezone)
        self.allow_change_bouquets = allow_change_bouquets
        self.credits = credits
        self.packages = {
            int(pid): {"duration": 1, "unit": "months", "credits": 1, "max_connections": 1,
                       "bouquets": [1, 2, 3], "outputs": [1, 2], "is_line": True, **spec}
            for pid, spec in (packages if packages is not None else {7: {}}).items()
        }
        self.allow_change_username = allow_change_username
        self.allow_change_password = allow_change_password
        self.can_create_lines = can_create_lines
        self.api_search = api_search
        self.now = time.time  # the panel's clock (a test may move it)

    def new_row(self, line_id: int) -> dict:
        return {**super().new_row(line_id), "member_id": self.api_user["id"]}

    def visible(self, row: dict) -> bool:
        return row["member_id"] == self.api_user["id"]

    def do_user_info(self, request: dict) -> dict:
        reply = super().do_user_info(request)
        reply["data"]["credits"] = str(self.credits)
        # api/reseller/index.php:244-248: the group's users_groups row (strings, as MySQL sends)
        # merged with the user's own (reseller_api.php:34-35). live: "allow_change_username":"1".
        reply["permissions"] = mysql_row({
            "is_reseller": 1, "create_line": int(self.can_create_lines),
            "allow_change_username": int(self.allow_change_username),
            "allow_change_password": int(self.allow_change_password),
            "allow_change_bouquets": int(self.allow_change_bouquets), "minimum_username_length": 8})
        return reply

    def do_get_lines(self, request: dict) -> dict:
        if self.api_search:
            return super().do_get_lines(request)
        # api/reseller/index.php:39-40 asks table.php, which answers only when the user row has
        # 'reports' (api/reseller/table.php:47); the API's getRegisteredUser row has none, so
        # the reply is empty even for the reseller's own line (live: "data":[]).
        return {"status": "STATUS_SUCCESS", "data": []}

    def do_packages(self, request: dict) -> dict:
        # api/reseller/index.php:249-265: the users_packages rows of the reseller's group.
        return {"status": "STATUS_SUCCESS", "data": [
            mysql_row({"id": pid, "package_name": f"{p['duration']} {p['unit']}",
                       "official_credits": p["credits"], "official_duration": p["duration"],
                       "official_duration_in": p["unit"], "is_line": int(p["is_line"]),
                       "bouquets": p["bouquets"], "output_formats": p["outputs"],
                       "max_connections": p["max_connections"], "check_compatible": 1})
            for pid, p in self.packages.items()]}

    def package_problem(self, data: dict) -> tuple[dict | None, str | None]:
        """The package asked for, or the status refusing it (checked before any write)."""
        if not data.get("package"):
            return None, "STATUS_INVALID_PACKAGE"  # reseller_api.php:1003-1005
        package = self.packages.get(php_intval(data.get("package")))
        if package is None or not package["is_line"]:
            return None, "STATUS_INVALID_TYPE"  # getPackage() null (reseller_api.php:1000-1001)
        if package["credits"] > self.credits:
            return None, "STATUS_INSUFFICIENT_CREDITS"  # reseller_api.php:949, :995
        return package, None

    def bouquet_count_crashes(self, data: dict) -> bool:
        """reseller_api.php:969 (package bought) and :1013 (edit of a line with a package) run
        ``count($rData['bouquets_selected'])`` when the group has ``allow_change_bouquets``:
        PHP 8 throws a TypeError on anything but an array (absent: null; JSON text: a string)
        and the API prints nothing (live on XC_VM: an empty 200, no line)."""
        return self.allow_change_bouquets and not isinstance(data.get("bouquets_selected"), list)

    def apply_package(self, row: dict, package: dict, base: float, selected: object = None) -> None:
        # reseller_api.php:954-961 strtotime('+N unit', base) in the reseller's zone; what the
        # package writes (:967-993) and its outputs (:1151-1160). With allow_change_bouquets,
        # the selected bouquets that are the package's replace its list (:969-980).
        row["exp_date"] = php_add(int(base), package["duration"], package["unit"], self.zone)
        row["max_connections"] = package["max_connections"]
        chosen = [php_intval(b) for b in selected or () if php_intval(b) in package["bouquets"]] \
            if self.allow_change_bouquets and isinstance(selected, list) else []
        row["bouquet"] = chosen or list(package["bouquets"])
        row["allowed_outputs"] = list(package["outputs"])

    def do_create_line(self, request: dict) -> dict:
        if not self.can_create_lines:
            return {"status": "STATUS_NO_PERMISSIONS"}
        data = {k: v for k, v in request.items() if k in self.accepted_keys}
        if data.get("trial"):
            return {"status": "STATUS_NO_TRIALS", "data": data}
        package, problem = self.package_problem(data)
        if problem:
            return {"status": problem, "data": data}
        if self.bouquet_count_crashes(data):
            return CRASHED
        row = self.new_row(self._next_id)  # generated credentials unless the group may choose
        if self.allow_change_username and data.get("username"):
            row["username"] = data["username"]
        if self.allow_change_password and data.get("password"):
            row["password"] = data["password"]
        if any(r["username"] == row["username"] for r in self.lines.values()):
            return {"status": "STATUS_EXISTS_USERNAME", "data": data}
        self.apply_package(row, package, self.now(), data.get("bouquets_selected"))
        row["package_id"] = php_intval(data["package"])
        for column in ("reseller_notes", "contact"):
            row[column] = data.get(column)  # reseller_api.php:1035-1036: absent is NULL
        reply = self.store(row)
        self.credits -= package["credits"]  # charged after the write (reseller_api.php:1170-1172)
        return reply

    def do_edit_line(self, request: dict) -> dict:
        row = self.line(request)
        if row is None:
            return sample("xui-failure")
        data = {k: v for k, v in request.items() if k in self.accepted_keys}
        package = None
        if ("package" in data or row["package_id"]) and self.bouquet_count_crashes(data):
            return CRASHED  # an edit of a line with a package counts too (reseller_api.php:1013)
        if "package" in data:
            package, problem = self.package_problem(data)
            if problem:
                return {"status": problem, "data": data}
            now = self.now()
            active = row["exp_date"] is not None and now <= row["exp_date"]
            self.apply_package(row, package, row["exp_date"] if active else now, data.get("bouquets_selected"))
        if self.allow_change_username and data.get("username"):
            row["username"] = data["username"]
        if self.allow_change_password and data.get("password"):
            row["password"] = data["password"]
        for column in ("reseller_notes", "contact"):
            # reseller_api.php:1035-1036, unconditional: not re-sent means wiped (live: null).
            row[column] = data.get(column)
        self.cache[row["id"]] = dict(row)  # reseller processLine always signals (:1168)
        if package is not None:
            self.credits -= package["credits"]
        return {"status": "STATUS_SUCCESS", "data": mysql_row(row)}

    def set_column(self, request: dict, column: str, value: int) -> dict:
        # api/reseller/index.php:310-323: a plain UPDATE by id, no ownership check (live: a
        # reseller enabled an admin's line), no cache refresh.
        row = self.lines.get(php_intval(request.get("id")))
        if row is None:
            return sample("xui-failure")
        row[column] = value
        return sample("xui-success")
