"""The root Typer app every command module registers on, and the config loader they share.

Domain code raises typed errors; ``_Group`` is the only place that turns them into one line on
stderr and an exit code (0 ok, 1 failure, 2 usage/config error).
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from typer.core import TyperGroup

from ..errors import ConfigError, IptvsyncError, UsageError


class _Group(TyperGroup):
    def main(self, *args, **kwargs):
        from .help import polish

        polish(self)
        return super().main(*args, **kwargs)

    def list_commands(self, ctx):
        from .help import command_order

        return sorted(super().list_commands(ctx), key=command_order)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, UsageError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except IptvsyncError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OverflowError as exc:  # an id or number given that SQLite cannot hold
            if "SQLite" not in str(exc):
                raise
            typer.echo(f"error: a number given is out of range (at most {2**63 - 1})", err=True)
            raise typer.Exit(2) from None


def _examples() -> str:
    from .help import EXAMPLES

    return EXAMPLES


app = typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  add_completion=False, help="Monetizze postbacks in, IPTV lines and buyer emails out.",
                  epilog=_examples())


@app.callback()
def root(ctx: typer.Context,
         config: str = typer.Option(None, "--config", "-c", envvar="IPTVSYNC_CONFIG",
                                    help="config.toml to use (default ./config.toml)."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details.")):
    """Monetizze postbacks in, IPTV lines and buyer emails out."""
    ctx.obj = {"config": config}
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def config_path(ctx: typer.Context) -> str | None:
    return (ctx.obj or {}).get("config") or os.environ.get("IPTVSYNC_CONFIG")


def load(ctx: typer.Context, overrides: dict | None = None, *, lenient: bool = False):
    from ..config import load_config
    from ..logsafe import install

    cfg = load_config(config_path(ctx), overrides=overrides, lenient=lenient)
    install(cfg)  # no secret in any log line from here on, -v included
    return cfg


def writes(ctx: typer.Context, cfg) -> None:
    """This command writes into the ledger: it holds the ledger's shared lock (``ledger/lock.py``)
    until it returns, so `restore` and `rekey` refuse while it runs, and it refuses at once (one
    line, exit 1) while they run: its write cannot land in a file being replaced or miss a rekey.
    Call it before opening the ledger. Read-only commands never call it: they keep working then."""
    from ..ledger.db import require_ledger
    from ..ledger.lock import shared

    require_ledger(cfg.ledger_path)  # a typo in [ledger] path creates no lock file
    ctx.with_resource(shared(cfg.ledger_path))
