"""How ``--help`` reads: commands grouped by task, no ``<bool>``/``<str>`` type labels, text shown
as written (Typer parses help as rich markup, which would eat "[products]"), three examples
at the end of the top-level help.
"""

from __future__ import annotations

import re
from copy import copy

#: top-level command -> its panel in ``iptvsync --help``, in the order shown
PANELS = {
    "status": "Daily", "logs": "Daily", "subs": "Daily", "inbox": "Daily",
    "init": "Setup", "doctor": "Setup", "deploy": "Setup", "simulate": "Setup", "mail": "Setup",
    "notify": "Setup",
    "admin": "Setup",
    "serve": "Machinery", "process": "Machinery", "reconcile": "Machinery", "backup": "Machinery",
    "audit": "Machinery", "restore": "Machinery", "rekey": "Machinery",
}
PANEL_ORDER = ("Daily", "Setup", "Machinery")

EXAMPLES = """Examples:

iptvsync status                          healthy? (exit 1 if not)

iptvsync logs --email maria@example.com  what happened to one buyer

iptvsync subs list --state grace         who is past paid_until, in grace"""


def command_order(name: str) -> tuple[int, int]:
    """Sort key for the top-level commands: by panel, then as listed in ``PANELS``."""
    panel = PANELS.get(name)
    return (PANEL_ORDER.index(panel) if panel else len(PANEL_ORDER), list(PANELS).index(name) if panel else 0)


#: rich's markup tags: what ``escape`` must neutralise (``rich.markup.escape``'s own pattern)
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    """``rich.markup.escape(text)``, without importing rich's markup machinery (~14 ms of
    every command's start: ``polish`` runs before any command, help or not). The same
    substitution; tests/test_cli_texts.py checks it against rich's own."""
    text = _MARKUP_TAG.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def polish(command, *, top: bool = True) -> None:
    """Prepare a Click command tree (as Typer built it) for help, once."""
    if getattr(command, "_iptvsync_polished", False):
        return
    command._iptvsync_polished = True
    if command.help:
        command.help = escape(command.help)
    if getattr(command, "short_help", None):
        command.short_help = escape(command.short_help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "param_type_name", "") == "option" and param.metavar is None:
            # a flag takes no value; any other option names what it takes, e.g. EMAIL or LIMIT
            param.metavar = "" if param.is_flag or param.count else param.name.upper()
        elif getattr(param, "param_type_name", "") == "argument":
            param.metavar = param.metavar or param.name.upper()
            # the name says it: no "<str>" beside it (the type is copied: Click shares one per kind)
            param.type = copy(param.type)
            param.type.get_metavar = _no_type
    _quiet_help_option(command)
    for name, sub in getattr(command, "commands", {}).items():
        if top and name in PANELS:
            sub.rich_help_panel = PANELS[name]
        polish(sub, top=False)


def _no_type(param=None, ctx=None) -> str:
    return ""


def _quiet_help_option(command) -> None:
    option = command.get_help_option(command.context_class(command))
    if option is not None:
        option.metavar = ""
