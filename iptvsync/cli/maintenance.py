"""Commands that maintain an install: restore a backup, rotate the secret key."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .app import app, load


@app.command()
def restore(ctx: typer.Context,
            backup: Path = typer.Argument(..., help="A copy made by `iptvsync backup` (or `litestream restore`)."),
            yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")):
    """Replace the ledger with a backup; the old one is kept aside."""
    from ..ledger.backups import check_copy
    from ..ledger.backups import restore as restore_copy
    from ..ledger.db import Ledger
    from ..ledger.lock import exclusive

    cfg = load(ctx)
    postbacks = check_copy(backup)
    with exclusive(cfg.ledger_path, "restore"):  # refused (one line, exit 1) while serve or process runs
        if not yes and not typer.confirm(f"replace {cfg.ledger_path} with {backup} ({_postbacks(postbacks)})?"):
            typer.echo("nothing restored", err=True)
            raise typer.Exit(1)
        aside = restore_copy(backup, cfg.ledger_path)
        if aside:
            raw = Path(f"{aside}-wal").exists()  # it did not open: kept as found, with its -wal
            typer.echo(f"previous ledger kept as {aside}" + (" (as found, with its -wal)" if raw else ""))
        applied = Ledger(cfg.ledger_path, migrate=False, create=True).migrate()
    typer.echo(f"restored {cfg.ledger_path} from {backup}: {_postbacks(postbacks)}"
               + (f", {len(applied)} migrations applied" if applied else ""))
    typer.echo("next: start serve and the timers; `iptvsync process` converges panels and emails")


def _postbacks(n: int) -> str:
    return "1 postback" if n == 1 else f"{n} postbacks"


@app.command()
def rekey(ctx: typer.Context):
    """Re-encrypt panel passwords under a new IPTVSYNC_SECRET_KEY."""
    from ..ops.rekey import rekey as run_rekey

    cfg = load(ctx)
    result = run_rekey(cfg, environ=dict(os.environ))
    typer.echo(f"{'resumed an interrupted rekey: ' if result.resumed else ''}re-encrypted {result.reencrypted} "
               f"password(s) ({result.already_done} already done); new IPTVSYNC_SECRET_KEY is in {cfg.env_path}")
    typer.echo("note: the old key stays in IPTVSYNC_RETIRED_KEYS for backups made before now")
    typer.echo("next: start the receiver and the timers again")
