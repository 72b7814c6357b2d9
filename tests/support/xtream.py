"""Fake Xtream Codes v2 ``wwwdir/api.php`` on loopback (decoded XC 2.9 behaviour).

XC v2 (ProTechEx/xtream-codes-decoded-v2.9 @ c4508b7, cited as XC29): only the
username+password pair is unique (same username, other password → a second row); an unknown
``user_data`` key (``output_formats`` included) → PARAMETER ERROR; with ``strict`` (MySQL's
STRICT_TRANS_TABLES, on by default since MariaDB 10.2.4 / MySQL 5.7) a create missing any NOT
NULL column without a default → PARAMETER ERROR (XC29 database.sql:1378-1379, :1395, :1398;
api.php:240-241), and an edit with a non-integer ``exp_date`` too (live MariaDB: ERROR 1265);
``exp_date`` goes through intval; a non-JSON or array ``bouquet`` → []; IP
FORBIDDEN / KEY WRONG as ``{"result":false,"0":…}``; ``edit`` answers ``{"result":true}`` even
when nothing changed; NOT EXISTS. ``allowed_ips`` is the complete list (the real panel also
always allows 127.0.0.1; here loopback must be listed, so tests can see IP FORBIDDEN).
A create gives the line outputs 1, 2, 3 (XC29 api.php:204, :232-233). ``/player_api.php``
answers as Xtream_main's ladder (``player-api-xc.json``); ``garbled_status`` reproduces
XC29 player_api.php:196-206, where an active line reads "Expired".
"""



from __future__ import annotations

import json
import re
import time

from support.fakepanel import NGINX, FakePanel, generate_string, json_ids, mysql_row, php_intval, sample

XC_COLUMNS = frozenset({
    "member_id", "username", "password", "exp_date", "admin_enabled", "enabled", "admin_notes",
    "reseller_notes", "bouquet", "max_connections", "is_restreamer", "allowed_ips", "allowed_ua",
    "is_trial", "created_at", "created_by", "pair_id", "is_mag", "is_e2", "force_server_id",
    "is_isplock", "as_number", "isp_desc", "forced_country", "is_stalker", "bypass_ua",
    "play_token"})
XC_INT_COLUMNS = frozenset({"member_id", "admin_enabled", "enabled", "max_connections",
                            "is_restreamer", "is_trial", "is_mag", "is_e2", "is_stalker",
                            "is_isplock", "bypass_ua", "force_server_id"})
#: NOT NULL without a DEFAULT that api.php does not fill (XC29 database.sql:1378-1379, :1395, :1398)
XC_REQUIRED = frozenset({"admin_notes", "reseller_notes", "forced_country", "play_token"})
XC_OUTPUTS = {"m3u8": ("1", "HLS", "m3u8"), "ts": ("2", "MPEGTS", "ts"), "rtmp": ("3", "RTMP", "")}


class FakeXtreamCodes(FakePanel):
    """Xtream Codes v2 ``wwwdir/api.php`` (action=user, sub=info|create|edit)."""

    write_actions = frozenset({"user.create", "user.edit"})

    def __init__(self, api_pass: str | None = None, allowed_ips: list[str] | None = None,
                 strict: bool = True, garbled_status: bool = False):
        super().__init__()
        self.api_pass, self.allowed_ips, self.strict = api_pass, allowed_ips, strict
        self.garbled_status = garbled_status

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
                "play_token": "", "outputs": [1, 2, 3]}

    def action_of(self, request: dict) -> str:
        return f"{request.get('action', '')}.{request.get('sub', '')}"

    def route(self, path: str, request: dict, client_ip: str) -> tuple[int, dict | str]:
        if path == "/player_api.php":
            return self.player_api(request)
        if path != "/api.php":
            return 404, NGINX.format("404 Not Found")
        if self.allowed_ips is not None and client_ip not in self.allowed_ips:
            return 200, sample("xtream-ip-forbidden")
        if self.api_pass and request.get("api_pass") != self.api_pass:
            return 200, sample("xtream-key-wrong")
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
        missing = not XC_REQUIRED <= set(columns or {})
        if columns is None or (self.strict and missing):
            return sample("xtream-create-parameter-error")
        row = self.new_row(self._next_id)  # username/password generated only when absent
        for column, value in columns.items():
            row[column] = php_intval(value) if column in XC_INT_COLUMNS else value
        row["exp_date"] = php_intval(columns["exp_date"]) if columns.get("exp_date") else None
        row["bouquet"] = json_ids(columns.get("bouquet"))
        for column in ("allowed_ips", "allowed_ua"):
            row[column] = json.loads(row[column]) if _is_json_list(row[column]) else []
        row["created_at"], row["created_by"] = int(time.time()), 0
        if self.find(row) is not None:  # only the pair is unique
            return sample("xtream-create-exists")
        if not self.ignore_writes:
            self.lines[row["id"]] = row
        self._next_id += 1
        return {"result": True, "created_id": row["id"], "username": row["username"],
                "password": row["password"]}

    def edit(self, request: dict) -> dict:
        if not request.get("username") or not request.get("password"):
            return sample("xtream-parameter-error-userpass")
        row = self.find(request)
        if row is None:
            return sample("xtream-not-exists")
        columns = self.columns(request)
        bad_date = not re.fullmatch(r"\d*", str((columns or {}).get("exp_date") or ""))
        if columns is None or (self.strict and bad_date):
            return sample("xtream-create-parameter-error")
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
        return sample("xtream-edit-ok")  # also when nothing changed

    def info(self, request: dict) -> dict:
        if not request.get("username") or not request.get("password"):
            return sample("xtream-parameter-error-userpass")
        row = self.find(request)
        if row is None:
            return sample("xtream-not-exists")
        info = mysql_row({k: v for k, v in row.items()
                          if k not in ("bouquet", "allowed_ips", "allowed_ua", "outputs")})
        bouquet = row["bouquet"] if isinstance(row["bouquet"], list) else json_ids(row["bouquet"])
        info.update(bouquet=bouquet, allowed_ips=row["allowed_ips"], allowed_ua=row["allowed_ua"],
                    active_cons="0", pair_line_info=[], con_isp_name=None, con_isp_type=None,
                    isp_is_server=0, isp_violate=0, output_formats={
                        key: {"access_output_id": oid, "output_name": name, "output_key": key,
                              "output_ext": ext} for key, (oid, name, ext) in XC_OUTPUTS.items()})
        return {"result": True, "user_info": info}

    def player_api(self, request: dict) -> tuple[int, dict | str]:
        """XC29 wwwdir/player_api.php:14 (no username or password: empty body), :185-216."""
        if not request.get("username") or not request.get("password"):
            return 200, ""
        row = self.find(request)
        if row is None:
            return 200, sample("player-api-xc-auth-fail")  # :214-216
        reply = sample("player-api-xc")  # valid pair: auth 1 whatever the state (:185-212)
        expiry = row["exp_date"]
        current = expiry is None or expiry > time.time()
        active = row["admin_enabled"] == 1 and row["enabled"] == 1 and current
        if active and request.get("action") in PLAYER_ACTIONS:
            return 200, []  # :33-38 an action runs only for an active line; no categories seeded
        # anything else (no action, or a line not active) is the default branch: the login object
        if self.garbled_status:  # :196-206 as decoded: the last test always wins, inverted
            status = "Expired" if current else "Banned"
        else:  # Xtream_main's ladder: Banned > Disabled > Active > Expired
            status = ("Banned" if not row["admin_enabled"] else "Disabled" if not row["enabled"]
                      else "Active" if current else "Expired")
        reply["user_info"].update(
            username=row["username"], password=row["password"], status=status,
            exp_date=None if expiry is None else str(expiry), is_trial=str(row["is_trial"]),
            created_at=str(row["created_at"]), max_connections=str(row["max_connections"]),
            allowed_output_formats=[key for key, (oid, _, _) in XC_OUTPUTS.items()
                                    if int(oid) in row["outputs"]])
        reply["server_info"]["timestamp_now"] = int(time.time())
        return 200, reply


#: XC29 wwwdir/player_api.php:17 ``$valid_actions`` (the ones a client names).
PLAYER_ACTIONS = ("get_vod_categories", "get_live_categories", "get_live_streams", "get_vod_streams",
                  "get_series_info", "get_short_epg", "get_series_categories", "get_simple_data_table",
                  "get_series", "get_vod_info")


def _is_json_list(value: object) -> bool:
    try:
        return isinstance(value, str) and isinstance(json.loads(value), list)
    except ValueError:
        return False
