"""Fake Xtream Codes v2 ``wwwdir/api.php`` on loopback (decoded XC 2.9 behaviour).

XC v2: only the username+password pair is unique (same username, other password → a second
row); an unknown ``user_data`` key (``output_formats`` included) → PARAMETER ERROR; missing
``admin_notes``/``reseller_notes`` → PARAMETER ERROR (``strict_notes``, the MySQL strict-mode
assumption); ``exp_date`` goes through intval; a non-JSON or array ``bouquet`` → []; IP
FORBIDDEN / KEY WRONG as ``{"result":false,"0":…}``; ``edit`` answers ``{"result":true}`` even
when nothing changed; NOT EXISTS. ``allowed_ips`` is the complete list (the real panel also
always allows 127.0.0.1; here loopback must be listed, so tests can see IP FORBIDDEN).
"""



from __future__ import annotations

import json
import re
import time

from support.fakepanel import NGINX, FakePanel, generate_string, json_ids, mysql_row, php_intval

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


def _is_json_list(value: object) -> bool:
    try:
        return isinstance(value, str) and isinstance(json.loads(value), list)
    except ValueError:
        return False


