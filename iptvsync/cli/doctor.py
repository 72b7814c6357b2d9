"""``iptvsync doctor``."""

from __future__ import annotations

import typer

from .app import app, load
from .output import JSON_OPTION, emit


@app.command()
def doctor(ctx: typer.Context, as_json: bool = JSON_OPTION):
    """Check config, ledger, panels (and reseller credits), SMTP login and the TLS certificate."""
    from ..ops.doctor import doctor as run_checks

    rows = run_checks(load(ctx))
    emit(rows, ("check", "status", "detail"), as_json=as_json, title="iptvsync doctor")
    if any(r["status"] == "fail" for r in rows):
        raise typer.Exit(1)
