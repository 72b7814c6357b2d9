"""Fake XUI.one admin and reseller APIs on loopback (XC_VM behaviour).

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
"""



from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from support.fakepanel import NGINX, XUI_FLAGS, FakePanel, generate_string, json_ids, mysql_row, php_intval


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


