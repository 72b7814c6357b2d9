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
    from ..engine.runner import AlreadyRunning, process_lock
    from ..ledger.backups import check_copy
    from ..ledger.backups import restore as restore_copy
    from ..ledger.db import Ledger

    cfg = load(ctx)
    postbacks = check_copy(backup)
    if not yes and not typer.confirm(f"replace {cfg.ledger_path} with {backup} ({postbacks} postbacks)?"):
        raise typer.Exit(1)
    try:
        with process_lock(cfg.ledger_path):
            aside = restore_copy(backup, cfg.ledger_path)
    except AlreadyRunning as exc:
        typer.echo(f"error: {exc}: stop the timers (or cron) first", err=True)
        raise typer.Exit(1) from None
    if aside:
        typer.echo(f"previous ledger kept as {aside}")
    applied = Ledger(cfg.ledger_path, migrate=False).migrate()
    typer.echo(f"restored {cfg.ledger_path} from {backup}: {postbacks} postbacks"
               + (f", {len(applied)} migrations applied" if applied else ""))
    typer.echo("next: start serve and the timers; `iptvsync process` converges panels and emails")


@app.command()
def rekey(ctx: typer.Context):
    """Re-encrypt panel passwords under a new IPTVSYNC_SECRET_KEY."""
    from ..ops.rekey import rekey as run_rekey

    cfg = load(ctx)
    result = run_rekey(cfg, environ=dict(os.environ))
    typer.echo(f"{'resumed an interrupted rekey: ' if result.resumed else ''}re-encrypted {result.reencrypted} "
               f"password(s) ({result.already_done} already done); new IPTVSYNC_SECRET_KEY is in {cfg.env_path}")
    typer.echo("note: backups made before now need the old key: keep it offline as long as you keep them; "
               "restart a running `serve --process-every` so it reads the new key")
