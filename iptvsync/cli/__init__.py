"""The ``iptvsync`` command line: thin commands over the domain modules, one module per
command group, each registering itself on the root app (``cli.app``) when imported."""

from __future__ import annotations

import sys

import typer

from ..errors import ConfigError
from .app import app

__all__ = ["app", "main"]


def _register() -> None:
    # commands register themselves on the app when their module is imported
    from . import deploy, doctor, inbox, logs, mail, maintenance, process, reconcile, setup, simulate, subs  # noqa: F401


def main() -> None:
    _register()
    try:
        app()
    except ConfigError as exc:  # raised while parsing options, before a group could catch it
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


