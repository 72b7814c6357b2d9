"""XUI.one reseller API adapter (``xui-reseller``): lines bought with packages and credits.

A reseller cannot set ``exp_date``, ``max_connections``, bouquets or outputs: the package does.
So ``create`` buys one package period, and ``update`` extends by calling ``edit_line`` with
``package``, which the panel adds to the current expiry (or to now when expired) with PHP's
``strtotime('+N months')`` in the reseller's timezone, and charges again (XC_VM
reseller_api.php:954-961). A "1 month" package bought on 1 February ends on 1 March: 28 days.
Because every such call spends credits, ``update`` buys at most one per call, and only when the
panel's expiry is short of the spec's by more than a short calendar month explains (three days
per month of the package, read from the panel's ``packages``, plus a day): a February never
buys a second package, but a line created late (after an outage, or by ``reconcile
monetizze``) that would end before what was paid buys one. The engine re-reads and calls
again while still short (``caps.extends_by_package``).

Every ``create_line`` and ``edit_line`` carries the package's bouquets as the form array
``bouquets_selected[]``: when the reseller's group has "Allow Bouquet Editing"
(``allow_change_bouquets``), XC_VM calls ``count($rData['bouquets_selected'])`` on a package
purchase and on any edit of a line with a package (reseller_api.php:969 and :1013); PHP 8's
``count(null)`` throws and the API answers an empty 200 with no line (live on XC_VM). The
panel keeps only the package's own bouquets from what is sent (:972-980), so sending them
changes nothing on a group without the permission.

``edit_line`` stores ``reseller_notes`` and ``contact`` as sent, NULL when absent
(reseller_api.php:1035-1036): every edit re-sends them as read. ``enable_line``/``disable_line``
do not refresh the panel's line cache (api/reseller/index.php:310-323); a free ``edit_line``
after them does (reseller_api.php:1168), so one follows.

Lines are found by the stored line id: on XC_VM the reseller API's ``get_lines`` answers an
empty list whatever the search (api/reseller/table.php:47), so the search below only helps on
panels where it works (UNCONFIRMED on XUI.one).

A reseller whose group lacks ``allow_change_username`` gets a panel-generated username
(reseller_api.php:1045-1060). Through the API, a reseller's ``get_lines`` is empty on XC_VM
and on the XUI lineage (its reseller/table.php answers web sessions only), so after a create
whose reply is lost nothing finds such a line, and the retry buys a second one. The adapter
therefore always chooses the username: ``create`` refuses, before buying anything, a reseller
whose ``user_info`` ``permissions`` (api/reseller/index.php:244-248) say it may not, with the
fix in one line, and ``health`` says the same for ``doctor``. A retry of a lost create then
meets STATUS_EXISTS_USERNAME (ambiguous: re-read, never a second purchase). Without
``allow_change_password`` the panel's password is used and returned (from ``data``). Our
username is also written into ``reseller_notes`` as ``[iptvsync:<username>]``, which a panel
whose reseller search works finds (UNCONFIRMED that XUI.one's covers notes).
"""

from __future__ import annotations

from iptvsync.errors import PanelError
from iptvsync.panels._http import OUTPUT_FORMATS, as_bool, as_int, as_int_list, line_from_row
from iptvsync.panels.base import Capabilities, Line, LineSpec
from iptvsync.panels.xui_admin import XuiApi, json_list

#: Expiry difference under which no package is bought: package periods are whole days and
#: the panel computes from its own clock.
EXTENSION_SLACK_S = 86400
#: Why a reseller whose group may not choose usernames is refused, and the fix (one line).
USERNAME_FIX = ("the reseller's group may not choose usernames: a create whose reply is lost would buy a "
                "second line; fix: tick \"Change Usernames\" in the panel's reseller group")
#: How much shorter than a ledger period one package unit may come out: a calendar month is
#: 28 to 31 days, a year 365 or 366.
SHORT_CALENDAR_S = {"months": 3 * 86400, "years": 86400}


def renamed_line_marker(username: str) -> str:
    return f"[iptvsync:{username}]"


class XuiResellerPanel(XuiApi):
    """XUI.one reseller API: expiry and limits come from the package; credits pay for it."""

    kind = "xui-reseller"
    caps = Capabilities(extends_by_package=True, chooses_credentials=True, has_credits=True,
                        has_player_api=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._packages: dict[int, dict] | None = None
        self._permissions: dict | None = None

    def create(self, spec: LineSpec) -> Line:
        package = self._package(spec)
        if self.username_problem():
            raise self.http.error(f"create_line: {USERNAME_FIX}", status="STATUS_NO_PERMISSIONS")
        marker = renamed_line_marker(spec.username)
        fields = {
            "package": package,
            "username": spec.username,
            "password": spec.password,
            "reseller_notes": f"{spec.notes} {marker}".strip(),
            **self.bouquet_fields(spec, package),
        }
        secrets = [spec.password]
        created = line_from_row(self.row_of(self.call("create_line", fields, secrets=secrets),
                                            "create_line", secrets))
        if not spec.enabled:
            self.set_enabled(created.line_id or "", False, secrets)
        return self.reread(created.username, created.password, created.line_id)

    def update(self, line: Line, spec: LineSpec) -> Line:
        secrets = [line.password, spec.password]
        current = self.current(line)
        line_id = current.line_id or ""
        extended = False
        if current.expires_at is not None and spec.expires_at - current.expires_at > self.shortfall_slack_s(spec):
            # One paid period, never more: the engine re-reads and asks again if still short.
            package = self._package(spec)
            self.call("edit_line", {"id": line_id, "package": package, **kept(current),
                                    **self.bouquet_fields(spec, package)}, secrets=secrets)
            extended = True
        if current.enabled != spec.enabled or (extended and not spec.enabled):
            self.set_enabled(line_id, spec.enabled, secrets)
            # A free edit (no package, no charge) queues the cache refresh enable/disable skip.
            self.call("edit_line", {"id": line_id, **kept(current),
                                    **self.bouquet_fields(spec, as_int(current.raw.get("package_id")))},
                      secrets=secrets)
        return self.reread(current.username, current.password, line_id)

    def packages(self) -> dict[int, dict]:
        """The reseller's packages by id (``action=packages``), read once per adapter."""
        if self._packages is None:
            rows = (self.call("packages") or {}).get("data") or []
            self._packages = {as_int(r.get("id")) or 0: r for r in rows if isinstance(r, dict)}
        return self._packages

    def bouquet_fields(self, spec: LineSpec, package: int | None) -> dict:
        """``bouquets_selected[]``: the package's bouquets (the spec's when the package is unknown).

        Absent, a group with bouquet editing makes the panel crash (see the module text)."""
        row = None
        if package:
            try:
                row = self.packages().get(package)
            except PanelError:
                row = None
        bouquets = [as_int(b) or 0 for b in json_list((row or {}).get("bouquets"))]
        chosen = [b for b in bouquets if b] or list(spec.bouquets)
        return {"bouquets_selected[]": chosen} if chosen else {}

    def shortfall_slack_s(self, spec: LineSpec) -> int:
        """How short the line may be without buying: a day, plus what short calendar months
        explain (3 days a month, a day a year). Never half a period: a line 10 days short of
        what was paid must buy, or it ends while paid and nothing ever buys again."""
        row = None
        if spec.package:
            try:
                row = self.packages().get(spec.package)
            except PanelError:
                row = None
        if not row:
            return EXTENSION_SLACK_S
        unit = str(row.get("official_duration_in") or "days").lower()
        unit = unit if unit.endswith("s") else unit + "s"
        count = as_int(row.get("official_duration")) or 0
        return EXTENSION_SLACK_S + count * SHORT_CALENDAR_S.get(unit, 0)

    def is_renamed_line(self, row: dict, username: str) -> bool:
        return renamed_line_marker(username) in str(row.get("reseller_notes") or "")

    def username_problem(self) -> str | None:
        """USERNAME_FIX when ``user_info`` says the group may not choose usernames; None when
        it may, or when the reply carries no ``permissions`` (UNCONFIRMED that XUI.one sends them)."""
        if self._permissions is None:
            reply = self.call("user_info") or {}
            permissions = reply.get("permissions")
            self._permissions = permissions if isinstance(permissions, dict) else {}
        if "allow_change_username" in self._permissions and not as_bool(self._permissions["allow_change_username"]):
            return USERNAME_FIX
        return None

    def health(self) -> dict:
        reply = self.call("user_info") or {}
        data = reply.get("data") or {}
        self._permissions = reply.get("permissions") if isinstance(reply.get("permissions"), dict) else {}
        facts = {"ok": True, "user": data.get("username"), "credits": credits_number(data.get("credits")),
                 "timezone": data.get("timezone") or "panel default"}
        problem = self.username_problem()
        if problem:
            facts["problem"] = problem
        packages = self.packages()
        facts["packages"] = "; ".join(
            f"{pid}: {row.get('official_duration')} {row.get('official_duration_in')}, "
            f"{row.get('official_credits')} cr, outputs "
            f"{','.join(OUTPUT_FORMATS.get(i, str(i)) for i in as_int_list(row.get('output_formats'))) or 'none'}"
            for pid, row in sorted(packages.items())) or "none"
        facts["line_cache"] = "unknown (the reseller API cannot tell; enable/disable are followed by an edit)"
        return facts

    def _package(self, spec: LineSpec) -> int:
        if spec.package is None:
            raise self.http.error("no package configured for this product (xui-reseller lines "
                                  "are bought by package)", status="STATUS_INVALID_PACKAGE")
        return spec.package


def kept(line: Line) -> dict:
    """The columns a reseller ``edit_line`` wipes unless re-sent, as the panel has them."""
    return {column: line.raw.get(column) or "" for column in ("reseller_notes", "contact")}


def credits_number(value: object) -> int | float | None:
    """Credits as a number: panels send "10", "10.00", 10 or 10.5."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return as_int(value)
    return int(number) if number.is_integer() else number
