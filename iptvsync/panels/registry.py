"""The panel families by kind: the one place that names them and turns a ``[panels.<name>]``
section into an adapter.

Everything else asks an adapter's ``caps`` (``base.Capabilities``), never its kind string.
Adapters are imported on first use, so reading the config does not import an HTTP client.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from iptvsync.panels.base import Capabilities, Panel

#: kind (the ``kind`` key of ``[panels.<name>]``) -> "module:class" of its adapter
FAMILIES = {
    "xui-admin": "iptvsync.panels.xui_admin:XuiAdminPanel",
    "xui-reseller": "iptvsync.panels.xui_reseller:XuiResellerPanel",
    "xtream-codes": "iptvsync.panels.xtream_codes:XtreamCodesPanel",
    "dry-run": "iptvsync.panels.dry_run:DryRunPanel",
}
KINDS = tuple(FAMILIES)


def family(kind: str) -> type:
    """The adapter class of one kind; ValueError naming the known kinds for any other."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    module, cls = FAMILIES[kind].split(":")
    return getattr(import_module(module), cls)


def capabilities(kind: str) -> Capabilities:
    return family(kind).caps


def build_panel(name: str, kind: str, url: str, api_key: str, timeout_s: float = 15,
                state_dir: str | Path | None = None, max_concurrency: int = 4) -> Panel:
    """The adapter for one configured panel; ValueError for an unknown kind or a missing url.

    ``state_dir`` is only used by families that keep local state (``dry-run``: its simulated
    lines and log).
    """
    cls = family(kind)
    if not cls.caps.real:
        return cls(name, state_dir=state_dir)
    return cls(name, url, api_key, timeout_s=timeout_s, max_concurrency=max_concurrency)
