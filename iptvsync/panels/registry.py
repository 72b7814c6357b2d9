"""Panel adapters: one module per family behind ``iptvsync.panels.base.Panel``.

``build_panel`` is the one place that turns a ``[panels.<name>]`` section into an adapter.
"""

from __future__ import annotations

from pathlib import Path

from iptvsync.panels.base import Line, LineSpec, Panel
from iptvsync.panels.dry_run import DryRunPanel
from iptvsync.panels.xtream_codes import XtreamCodesPanel
from iptvsync.panels.xui_admin import XuiAdminPanel
from iptvsync.panels.xui_reseller import XuiResellerPanel

PANEL_KINDS = ("xui-admin", "xui-reseller", "xtream-codes", "dry-run")

__all__ = ["PANEL_KINDS", "DryRunPanel", "Line", "LineSpec", "Panel", "XtreamCodesPanel",
           "XuiAdminPanel", "XuiResellerPanel", "build_panel"]


def build_panel(name: str, kind: str, url: str, api_key: str, timeout_s: float = 15,
                state_dir: str | Path | None = None, max_concurrency: int = 4) -> Panel:
    """The adapter for one configured panel; ValueError for an unknown kind or a missing url.

    ``state_dir`` is only used by ``dry-run`` (where it keeps its simulated lines and log).
    """
    if kind == "dry-run":
        return DryRunPanel(name, state_dir=state_dir)
    adapters = {"xui-admin": XuiAdminPanel, "xui-reseller": XuiResellerPanel,
                "xtream-codes": XtreamCodesPanel}
    if kind not in adapters:
        raise ValueError(f"panel {name!r}: unknown kind {kind!r} (one of {', '.join(PANEL_KINDS)})")
    return adapters[kind](name, url, api_key, timeout_s=timeout_s, max_concurrency=max_concurrency)
