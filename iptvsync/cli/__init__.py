"""The ``iptvsync`` command line: thin commands over the domain modules, one module per
command group, each registering itself on the root app (``cli.app``) when imported."""

from __future__ import annotations

import sys

import typer

from ..errors import ConfigError
from .app import app

__all__ = ["app", "main"]

#: Which module defines each top-level command (they register themselves on import).
COMMAND_MODULES = {"init": "setup", "serve": "setup", "backup": "setup", "audit": "setup", "doctor": "doctor",
                   "inbox": "inbox", "logs": "logs", "process": "process", "status": "process",
                   "reconcile": "reconcile", "simulate": "simulate", "subs": "subs", "deploy": "deploy",
                   "mail": "mail", "restore": "maintenance", "rekey": "maintenance", "notify": "notify",
                   "admin": "admin"}


def _register(argv: list[str] | None = None) -> None:
    """Import the command modules: only the one the command line names, when it names one
    (typer builds every registered command's options before running any: an operator's
    ``status`` should not pay for ``serve`` or ``reconcile``); all of them otherwise (help,
    a typo: typer then lists or suggests every command)."""
    import importlib

    name = _command_name(argv) if argv is not None else None
    for module in ([COMMAND_MODULES[name]] if name in COMMAND_MODULES else sorted(set(COMMAND_MODULES.values()))):
        importlib.import_module(f"{__name__}.{module}")


def _command_name(argv: list[str]) -> str | None:
    """The first word that is not a root option (or a root option's value)."""
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "-c"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main() -> None:
    _register(sys.argv[1:])
    try:
        app()
    except ConfigError as exc:  # raised while parsing options, before a group could catch it
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
