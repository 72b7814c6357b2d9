"""Xtream Codes v2 / Xtream UI server API adapter (``xtream-codes``): ``wwwdir/api.php``.

The configured URL is the server root (``http://host:25461``). Calls go to
``<url>/api.php?action=user&sub=info|create|edit`` with ``api_pass`` (when one is configured)
and everything else in the POST body (the server merges GET and POST, POST winning). The
panel must list this machine's IP in ``api_ips`` (or its admin whitelist).

Quirks handled:

* Only the username+password *pair* is unique: a create with a taken username and another
  password makes a second line. This API cannot look a line up by username alone, so the
  guard is the engine's invariant: a line's password is generated once and stored before the
  first create, every retry resends that same pair, a retried create meets ``EXISTS``
  (ambiguous) and ``get`` with the pair finds the line.
* ``user_data`` keys are inserted as columns, so an unknown key fails the whole create
  (``PARAMETER ERROR``): only known columns are sent, and never ``output_formats`` (its
  override is buggy server-side). ``bouquet`` is sent as a JSON text: a form array is stored
  as no bouquets. ``admin_notes``, ``reseller_notes``, ``forced_country`` and ``play_token``
  are NOT NULL without a default (database.sql:1378-1379, :1395, :1398): on a MySQL in strict
  mode a create without them is ``PARAMETER ERROR``, so all four are sent, empty (the panel
  only acts on them when non-empty: functions.php:205-206, streaming.php:291).
* A create without ``output_formats`` gives the line outputs 1, 2, 3 (api.php:204, :232-233).
* ``edit`` answers ``{"result": true}`` even when nothing changed: ``update`` re-reads.
* There is no delete in ``api.php``; iptvsync never deletes a line, it disables it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from iptvsync.panels._http import PanelHttp, line_from_row
from iptvsync.panels.base import Capabilities, Line, LineSpec

NOT_EXISTS = "NOT EXISTS"
EXISTS = "EXISTS"
REFUSALS = {
    "IP FORBIDDEN": "this machine's IP is not allowed (add it to the panel's api_ips)",
    "KEY WRONG": "wrong API password (api_pass)",
    "PARAMETER ERROR": "the panel rejected the line's columns",
    "PARAMETER ERROR (user/pass)": "username or password missing",
}


def user_data(**columns: object) -> dict[str, object]:
    return {f"user_data[{column}]": value for column, value in columns.items()}


class XtreamCodesPanel:
    """Xtream Codes v2 ``api.php``: lines identified by their username+password pair."""

    kind = "xtream-codes"
    # api_pass is optional: api.php may trust the caller's IP instead
    caps = Capabilities(has_player_api=True, needs_api_key=False)

    def __init__(self, name: str, url: str, api_key: str, timeout_s: float = 15,
                 max_concurrency: int = 4):
        if not url:
            raise ValueError(f"{self.kind} panel {name!r} needs a url (the server root)")
        self.name = name
        self._api_pass = api_key
        endpoint = url if url.rstrip("/").endswith("api.php") else url.rstrip("/") + "/api.php"
        self.http = PanelHttp(f"{self.kind} panel {name!r}", endpoint.rstrip("/"), timeout_s,
                              secrets=[api_key], pool_size=max_concurrency)

    def __repr__(self) -> str:
        return f"XtreamCodesPanel(name={self.name!r}, url={self.http.url!r})"

    def call(self, sub: str, fields: dict, *, secrets: Iterable[str] = (),
             absent_ok: bool = False) -> dict | None:
        """The reply of a ``result: true`` call; None for NOT EXISTS when ``absent_ok``."""
        body = {**fields, "api_pass": self._api_pass} if self._api_pass else dict(fields)
        what = f"user/{sub}"
        reply = self.http.post(what, body, query={"action": "user", "sub": sub}, secrets=secrets)
        if reply.get("result") is True:
            return reply
        # Refusals come as {"result":false,"error":"…"}, or {"result":false,"0":"…"} for auth.
        literal = str(reply.get("error") or reply.get("0") or "")[:80]
        if literal == NOT_EXISTS and absent_ok:
            return None
        if literal == EXISTS:
            raise self.http.error(f"{what}: this username+password already exists; an earlier "
                                  f"attempt may have created it ({EXISTS})", status=EXISTS,
                                  ambiguous=True, secrets=secrets)
        if literal in REFUSALS:
            raise self.http.error(f"{what}: {REFUSALS[literal]} ({literal})", status=literal,
                                  secrets=secrets)
        if "result" in reply and not literal:
            # e.g. create's INSERT affected no row: nothing was written.
            raise self.http.error(f"{what}: the panel answered result=false", status="FAILED",
                                  transient=True, secrets=secrets)
        raise self.http.error(f"{what}: unexpected reply ({literal or 'no result key'})",
                              status=literal or "BAD_REPLY", secrets=secrets)

    def get(self, username: str, password: str, line_id: str | None = None) -> Line | None:
        reply = self.call("info", {"username": username, "password": password},
                          secrets=[password], absent_ok=True)
        info = reply.get("user_info") if reply else None
        return line_from_row(info) if isinstance(info, dict) else None

    def create(self, spec: LineSpec) -> Line:
        fields = user_data(
            username=spec.username,
            password=spec.password,
            exp_date=spec.expires_at,
            max_connections=spec.max_connections,
            enabled=int(spec.enabled),
            admin_enabled=1,
            bouquet=json.dumps(list(spec.bouquets)),
            admin_notes=spec.notes,
            reseller_notes="",
            forced_country="",
            play_token="",
        )
        reply = self.call("create", fields, secrets=[spec.password]) or {}
        username = str(reply.get("username") or spec.username)
        password = str(reply.get("password") or spec.password)
        return self._reread(username, password)

    def update(self, line: Line, spec: LineSpec) -> Line:
        fields = {"username": line.username, "password": line.password, **user_data(
            exp_date=spec.expires_at,
            enabled=int(spec.enabled),
            max_connections=spec.max_connections,
            bouquet=json.dumps(list(spec.bouquets)),
        )}
        secrets = [line.password, spec.password]
        if self.call("edit", fields, secrets=secrets, absent_ok=True) is None:
            raise self.http.error("user/edit: no line with this username+password (NOT EXISTS)",
                                  status=NOT_EXISTS, transient=True, secrets=secrets)
        return self._reread(line.username, line.password)

    def health(self) -> dict:
        """Ask for a line that cannot exist: NOT EXISTS proves the IP and api_pass pass."""
        from secrets import token_hex  # here: reading the config imports this adapter

        probe = "iptvsync-health-" + token_hex(6)
        self.call("info", {"username": probe, "password": probe}, absent_ok=True)
        return {"ok": True}

    def _reread(self, username: str, password: str) -> Line:
        line = self.get(username, password)
        if line is None:
            raise self.http.error("the panel answered success but has no such line",
                                  status="NOT_FOUND", transient=True, ambiguous=True,
                                  secrets=[password])
        return line
