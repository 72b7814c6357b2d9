"""XUI.one reseller API adapter (``xui-reseller``): lines bought with packages and credits.

A reseller cannot set ``exp_date``, ``max_connections`` or bouquets: the package does. So
``create`` buys one package period, and ``update`` extends by calling ``edit_line`` with
``package``, which the panel adds to the current expiry (or to now when expired) and charges
again. Because every such call spends credits, ``update`` makes at most one per call and only
when the panel's expiry is more than a day short of the spec's; the engine re-reads and calls
again while it is still short (``caps.extends_by_package``).

A reseller whose group lacks ``allow_change_username``/``allow_change_password`` gets
panel-generated credentials: ``create`` returns the ones the panel used (from ``data``). So
that a retry after an ambiguous create can still find such a line by *our* username, the
username is also written into ``reseller_notes`` as ``[iptvsync:<username>]``; ``get_lines``
search covers the notes, and ``get`` accepts that marker when no exact username matches
(UNCONFIRMED that the reseller search covers notes as the admin one does).
"""

from __future__ import annotations

from iptvsync.panels._http import as_int, line_from_row
from iptvsync.panels.base import Capabilities, Line, LineSpec
from iptvsync.panels.xui_admin import XuiApi

#: Expiry difference under which no package is bought: package periods are whole days and
#: the panel computes from its own clock.
EXTENSION_SLACK_S = 86400


def renamed_line_marker(username: str) -> str:
    return f"[iptvsync:{username}]"


class XuiResellerPanel(XuiApi):
    """XUI.one reseller API: expiry and limits come from the package; credits pay for it."""

    kind = "xui-reseller"
    caps = Capabilities(extends_by_package=True, chooses_credentials=True, has_credits=True)

    def create(self, spec: LineSpec) -> Line:
        package = self._package(spec)
        marker = renamed_line_marker(spec.username)
        fields = {
            "package": package,
            "username": spec.username,
            "password": spec.password,
            "reseller_notes": f"{spec.notes} {marker}".strip(),
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
        if current.expires_at is not None and spec.expires_at - current.expires_at > EXTENSION_SLACK_S:
            # One paid period, never more: the engine re-reads and asks again if still short.
            self.call("edit_line", {"id": line_id, "package": self._package(spec)}, secrets=secrets)
            extended = True
        if current.enabled != spec.enabled or (extended and not spec.enabled):
            self.set_enabled(line_id, spec.enabled, secrets)
        return self.reread(current.username, current.password, line_id)

    def is_renamed_line(self, row: dict, username: str) -> bool:
        return renamed_line_marker(username) in str(row.get("reseller_notes") or "")

    def health(self) -> dict:
        data = (self.call("user_info") or {}).get("data") or {}
        return {"ok": True, "user": data.get("username"), "credits": credits_number(data.get("credits"))}

    def _package(self, spec: LineSpec) -> int:
        if spec.package is None:
            raise self.http.error("no package configured for this product (xui-reseller lines "
                                  "are bought by package)", status="STATUS_INVALID_PACKAGE")
        return spec.package


def credits_number(value: object) -> int | float | None:
    """Credits as a number: panels send "10", "10.00", 10 or 10.5."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return as_int(value)
    return int(number) if number.is_integer() else number
