"""XUI.one admin API adapter (``xui-admin``), and the XUI plumbing the reseller adapter shares.

The configured URL includes the access code (``http://host/<code>``). Each call POSTs
``api_key`` and the fields to ``<url>/?action=<action>`` (XUI merges GET and POST, so the
key stays out of the URL). Replies are ``{"status": "STATUS_…", "data": …}``, HTTP 200 even
for a bad key.

The XUI quirks this module exists to respect (XC_VM source; UNCONFIRMED on XUI.one itself):

* ``edit_line`` is not a partial update: an absent ``exp_date`` means *never expires*, absent
  ``max_connections``/``enabled``/``admin_enabled`` become 1, absent bouquets become none, and
  absent username/password are regenerated. ``update`` therefore reads the row and resends it.
* ``is_trial``, ``is_restreamer``… are set when the key is present at all, even as "0": they
  are only ever sent when the line already has them at 1 (so a trial stays a trial, and a
  paid line never becomes one).
* ``bouquets_selected`` is a JSON text (``"[1,2,3]"``), not a form array.
* ``exp_date`` is parsed by PHP ``new DateTime()`` in the API user's timezone, or the panel's
  ``default_timezone`` when the user has none (XC_VM admin_api.php:6907-6919,
  api/admin/index.php:699-701, xc_vm.php:47-49). It is sent as ``@<unix>``, which DateTime
  reads as UTC whatever the zone (confirmed on XC_VM; UNCONFIRMED on XUI.one). An empty
  ``exp_date`` on edit stores 0 (expired): never sent.
* ``access_output[]`` must be a form array on create *and* edit: absent (or a scalar, or JSON
  text) stores ``allowed_outputs = "[]"`` and every live stream is refused
  (admin_api.php:6948-6957, stream/auth.php:404-409). The panel's form ticks every output for a
  new line, so that is the default; ``outputs`` in the config narrows it.
* ``get_lines`` ``search[value]`` is a LIKE over username, password, notes…: matches are
  filtered client-side to the exact username.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from iptvsync.errors import PanelError
from iptvsync.panels._http import OUTPUT_FORMATS, OUTPUT_IDS, PanelHttp, as_bool, as_int, line_from_row
from iptvsync.panels.base import Capabilities, Line, LineSpec

STATUS_SUCCESS = "STATUS_SUCCESS"
STATUS_FAILURE = "STATUS_FAILURE"
STATUS_EXISTS_USERNAME = "STATUS_EXISTS_USERNAME"
#: Refusals that retrying will not cure, keyed by the panel's literal (``status`` or ``error``).
REFUSALS = {
    "Invalid API key.": "invalid API key",
    "Invalid action.": "unknown action (is this an admin key on a reseller code, or the reverse?)",
    "STATUS_NO_PERMISSIONS": "the API user lacks the permission for this action",
    "STATUS_INSUFFICIENT_CREDITS": "reseller out of credits",
    "STATUS_INVALID_PACKAGE": "invalid package (missing, unknown or not in the reseller's group)",
    "STATUS_INVALID_TYPE": "the package is not a line package",
    "STATUS_NO_TRIALS": "trials are not allowed now",
    "STATUS_INVALID_DATE": "the panel could not parse the expiry date",
    "STATUS_INVALID_INPUT": "the panel rejected the line fields",
    "STATUS_INVALID_USERNAME": "username refused (too short or a forbidden character)",
    "STATUS_INVALID_PASSWORD": "password refused (too short or a forbidden character)",
}
#: Flags XUI sets whenever the key is present; resent only while they are 1.
FLAG_KEYS = ("is_trial", "is_restreamer", "is_stalker", "is_isplock", "bypass_ua")
#: Columns edit_line would reset or reassign when absent; resent as read.
KEPT_COLUMNS = ("member_id", "admin_enabled", "admin_notes", "reseller_notes", "contact",
                "forced_country", "force_server_id")
#: JSON-list columns and the form array that sets each one (outputs: see ``output_ids``).
LIST_COLUMNS = {"allowed_ips": "allowed_ips[]", "allowed_ua": "allowed_ua[]"}
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_PAGES = 20


def panel_datetime(unix_s: int) -> str:
    """``@<unix>``: PHP's DateTime reads it as UTC, whatever the API user's timezone."""
    return f"@{int(unix_s)}"


def output_ids(spec: LineSpec, row: dict | None = None) -> list[int]:
    """The ``access_output[]`` ids to send: the configured formats, else the line's own, else
    every output (what the panel's form ticks for a new line)."""
    if spec.outputs:
        return sorted(OUTPUT_IDS[name] for name in spec.outputs)
    current = [i for i in json_list((row or {}).get("allowed_outputs")) if as_int(i) in OUTPUT_FORMATS]
    return sorted({as_int(i) or 0 for i in current}) or sorted(OUTPUT_FORMATS)


class XuiApi:
    """Calls, status handling, lookups and id-based actions common to both XUI APIs."""

    kind = "xui"
    caps = Capabilities()

    def __init__(self, name: str, url: str, api_key: str, timeout_s: float = 15,
                 max_concurrency: int = 4):
        if not url:
            raise ValueError(f"{self.kind} panel {name!r} needs a url (including the access code)")
        self.name = name
        self._api_key = api_key
        self.http = PanelHttp(f"{self.kind} panel {name!r}", url.rstrip("/") + "/", timeout_s,
                              secrets=[api_key], pool_size=max_concurrency)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self.http.url!r})"

    def call(self, action: str, fields: dict | None = None, *, secrets: Iterable[str] = (),
             absent_ok: bool = False) -> dict | None:
        """The reply of a STATUS_SUCCESS call; None for a bare STATUS_FAILURE if ``absent_ok``."""
        reply = self.http.post(action, {"api_key": self._api_key, **(fields or {})},
                               query={"action": action}, secrets=secrets)
        status, error = reply.get("status"), reply.get("error")
        if status == STATUS_SUCCESS:
            return reply
        if status == STATUS_FAILURE and not error:
            if absent_ok:
                return None
            # Unknown id, a failed write or (newer panels) a concurrent edit: nothing stored.
            raise self.http.error(f"{action}: the panel answered STATUS_FAILURE (unknown line "
                                  "or write failed)", status=STATUS_FAILURE, transient=True,
                                  secrets=secrets)
        literal = str(error or status or "no status in the reply")[:80]
        if literal == STATUS_EXISTS_USERNAME:
            raise self.http.error(f"{action}: username already exists; an earlier attempt may "
                                  f"have created it ({literal})", status=literal, ambiguous=True,
                                  secrets=secrets)
        text = REFUSALS.get(literal, "the panel refused")
        raise self.http.error(f"{action}: {text} ({literal})", status=literal, secrets=secrets)

    def row_of(self, reply: dict, action: str, secrets: Iterable[str] = ()) -> dict:
        data = reply.get("data")
        if not isinstance(data, dict) or not data.get("id"):
            raise self.http.error(f"{action}: success reply without the line row",
                                  status="BAD_REPLY", transient=True, ambiguous=True,
                                  secrets=secrets)
        return data

    # -- reads -------------------------------------------------------------------------

    def get(self, username: str, password: str, line_id: str | None = None) -> Line | None:
        secrets = [password]
        if line_id:
            row = self._get_row(line_id, secrets)
            if row is not None and row.get("username") == username:
                return line_from_row(row)
        found = self._search(username, secrets)
        if found is None:
            return None
        # get_lines rows lack the bouquets; get_line has the whole row.
        return line_from_row(self._get_row(str(found["id"]), secrets) or found)

    def _get_row(self, line_id: str, secrets: Iterable[str]) -> dict | None:
        reply = self.call("get_line", {"id": line_id}, secrets=secrets, absent_ok=True)
        data = reply.get("data") if reply else None
        return data if isinstance(data, dict) and data.get("id") else None

    def _search(self, username: str, secrets: Iterable[str]) -> dict | None:
        fallback = None
        for row in self.rows(username, secrets, max_pages=SEARCH_MAX_PAGES):
            if row.get("username") == username:
                return row
            if fallback is None and self.is_renamed_line(row, username):
                fallback = row
        return fallback

    def rows(self, search: str = "", secrets: Iterable[str] = (), max_pages: int | None = None):
        """Every ``get_lines`` row (matching ``search``), page by page until a short page.

        Not until ``recordsFiltered``: in API mode XC_VM answers ``min(total, limit)`` there
        (api/admin/table.php:146), so a count would stop after the first page."""
        start, page, seen = 0, 0, set()
        while max_pages is None or page < max_pages:
            fields = {"start": start, "limit": SEARCH_PAGE_SIZE, **({"search[value]": search} if search else {})}
            reply = self.call("get_lines", fields, secrets=secrets)
            rows = [row for row in reply.get("data") or [] if isinstance(row, dict)]
            fresh = [row for row in rows if row.get("id") not in seen]
            yield from fresh
            if len(rows) < SEARCH_PAGE_SIZE or not fresh:  # a panel ignoring `start` repeats a page
                return
            seen.update(row.get("id") for row in fresh)
            start, page = start + len(rows), page + 1

    def is_renamed_line(self, row: dict, username: str) -> bool:
        """Whether ``row`` is our line under a name the panel chose (reseller panels only)."""
        return False

    def current(self, line: Line) -> Line:
        """``line`` as the panel has it now, before a write; NOT_FOUND if it is gone."""
        found = self.get(line.username, line.password, line.line_id)
        if found is None or not found.line_id:
            raise self.http.error("the line is not on the panel", status="NOT_FOUND",
                                  transient=True, secrets=[line.password])
        return found

    def reread(self, username: str, password: str, line_id: str | None) -> Line:
        """The line after a write; the write's outcome is unknown if it cannot be found."""
        line = self.get(username, password, line_id)
        if line is None:
            raise self.http.error("the panel answered success but the line is not there",
                                  status="NOT_FOUND", transient=True, ambiguous=True,
                                  secrets=[password])
        return line

    # -- writes common to both APIs ------------------------------------------------------

    def set_enabled(self, line_id: str, enabled: bool, secrets: Iterable[str] = ()) -> None:
        self.call("enable_line" if enabled else "disable_line", {"id": line_id}, secrets=secrets)



class XuiAdminPanel(XuiApi):
    """XUI.one admin API: sets expiry, connections and bouquets directly."""

    kind = "xui-admin"
    caps = Capabilities(reports_timezone=True, has_player_api=True, lists_lines=True)

    def lines(self):
        """Every line of the panel, through ``get_lines`` (paged; rows lack the bouquets)."""
        for row in self.rows():
            yield line_from_row(row)

    def create(self, spec: LineSpec) -> Line:
        fields = {
            "username": spec.username,
            "password": spec.password,
            "exp_date": panel_datetime(spec.expires_at),
            "max_connections": spec.max_connections,
            "enabled": int(spec.enabled),
            "bouquets_selected": json.dumps(list(spec.bouquets)),
            "access_output[]": output_ids(spec),
            "admin_notes": spec.notes,
        }  # no flag keys at all: any of them, even "0", would set it
        secrets = [spec.password]
        created = line_from_row(self.row_of(self.call("create_line", fields, secrets=secrets),
                                            "create_line", secrets))
        return self.reread(created.username, created.password, created.line_id)

    def update(self, line: Line, spec: LineSpec) -> Line:
        secrets = [line.password, spec.password]
        row = self._get_row(line.line_id, secrets) if line.line_id else None
        if row is None or row.get("username") != line.username:
            row = self._get_row(self.current(line).line_id or "", secrets)
        if row is None:
            raise self.http.error("edit_line: the line is gone from the panel", status="NOT_FOUND",
                                  transient=True, secrets=secrets)
        self.call("edit_line", edit_fields(row, spec), secrets=secrets)
        return self.reread(str(row["username"]), str(row["password"]), str(row["id"]))

    def health(self) -> dict:
        data = (self.call("user_info") or {}).get("data") or {}
        facts = {"ok": True, "user": data.get("username")}
        settings = {}
        try:  # api/admin/index.php:565-566; a reseller key gets "Invalid action."
            settings = (self.call("get_settings", {"show_columns": "default_timezone,enable_cache"})
                        or {}).get("data") or {}
        except PanelError:
            pass
        # A user without a timezone gets the panel's default (xc_vm.php:47-49), not UTC.
        facts["timezone"] = data.get("timezone") or (
            f"{settings['default_timezone']} (panel default)" if settings.get("default_timezone")
            else "panel default")
        facts["outputs"] = "m3u8, ts, rtmp (new lines get all unless outputs narrows them)"
        if "enable_cache" in settings:
            facts["line_cache"] = "on" if as_bool(settings["enable_cache"]) else "off"
        return facts


def json_list(value: object) -> list:
    """A row's JSON-list column (``'["1.2.3.4"]'``) as a list; [] when empty or unreadable."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return value if isinstance(value, list) else []


def edit_fields(row: dict, spec: LineSpec) -> dict:
    """Every field edit_line would otherwise reset: the spec's values plus the row's own.

    Credentials are resent as the panel has them: an update never renames a line.
    """
    fields: dict = {
        "id": row["id"],
        "username": row["username"],
        "password": row["password"],
        "exp_date": panel_datetime(spec.expires_at),
        "max_connections": spec.max_connections,
        "enabled": int(spec.enabled),
        "bouquets_selected": json.dumps(list(spec.bouquets)),
    }
    for column in KEPT_COLUMNS:
        if row.get(column) is not None:
            fields[column] = row[column]
    for column, form_name in LIST_COLUMNS.items():
        values = json_list(row.get(column))
        if values:
            fields[form_name] = values
    fields["access_output[]"] = output_ids(spec, row)  # absent would store "[]"
    for flag in FLAG_KEYS:
        if as_bool(row.get(flag)):
            fields[flag] = 1
    return fields
