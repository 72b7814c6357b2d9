"""``iptvsync reconcile``: compare the ledger with Monetizze and with the panels."""

from __future__ import annotations

import json

import typer

from .app import app, load, writes
from .output import JSON_OPTION, emit

reconcile_app = typer.Typer(no_args_is_help=True, help="Compare the ledger with Monetizze and the panels.")
app.add_typer(reconcile_app, name="reconcile")

SALE_COLUMNS = ("sale_code", "event", "kind", "product_code", "mapped", "buyer_email", "outcome", "reason")
DRIFT_COLUMNS = ("subscription", "key", "panel", "buyer_email", "sync_status", "drift", "error", "fixed")


@reconcile_app.command("monetizze")
def monetizze(ctx: typer.Context,
              since: str = typer.Option("2d", help="Sales created or paid since: e.g. 2d, 12h, or a date."),
              dry_run: bool = typer.Option(False, "--dry-run", help="Report what is missing; store nothing."),
              as_json: bool = JSON_OPTION):
    """Fetch recent sales from Monetizze's API and put the ones the inbox lacks into it."""
    from ..clock import now
    from ..errors import ConfigError
    from ..ledger.db import Ledger
    from ..ops.reconcile import Outcome, reconcile_monetizze
    from ..timeparse import since_to_datetime

    cfg = load(ctx)
    start, until = since_to_datetime(since), now()
    if start is None or start >= until:
        raise ConfigError(f"invalid --since {since!r}: it must be in the past")
    if not dry_run:
        writes(ctx, cfg)
    ledger = Ledger(cfg.ledger_path)
    try:
        report = reconcile_monetizze(ledger, cfg, since=start, until=until, dry_run=dry_run)
    finally:
        ledger.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    emit(report["sales"], SALE_COLUMNS, as_json=False,
         title=f"Monetizze sales {report['since']} .. {report['until']} the inbox lacked")
    typer.echo(f"fetched {report['fetched']} sale(s) in {report['pages']} page(s): {report[Outcome.KNOWN]} known, "
               f"{report[Outcome.INJECTED]} injected, {report[Outcome.SKIPPED]} skipped"
               + (f", {report['new']} would be injected (dry run)" if dry_run else ""))
    for warning in report["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    if report["injected"]:
        typer.echo("run `iptvsync process` (or wait for cron) to apply them")


@reconcile_app.command("panel")
def panel(ctx: typer.Context,
          fix: bool = typer.Option(False, "--fix", help="Queue drifting subscriptions for the next `process`."),
          panel_name: str = typer.Option(None, "--panel", help="Only this [panels.<name>]."),
          as_json: bool = JSON_OPTION):
    """Read each subscription's line from its panel and report drift from the ledger; exit 1 if a read failed."""
    from ..clock import now
    from ..engine.runner import build_panels
    from ..errors import ConfigError
    from ..ledger.db import Ledger
    from ..ops.reconcile import reconcile_panels

    cfg = load(ctx)
    if panel_name is not None and panel_name not in cfg.panels:
        raise ConfigError(f"{cfg.path}: no [panels.{panel_name}]")
    if fix:
        writes(ctx, cfg)
    ledger = Ledger(cfg.ledger_path)
    try:
        report = reconcile_panels(ledger, cfg, build_panels(cfg), now(), panel_name, fix=fix)
    finally:
        ledger.close()
    fixed = report["fixed"]
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        emit(report["subscriptions"], DRIFT_COLUMNS, as_json=False, title="lines that differ from the ledger")
        typer.echo(f"checked {report['checked']} line(s): {report['in_sync']} in sync, {report['drift']} drifting, "
                   f"{report['errors']} unreadable" + (f"; {fixed} queued for `iptvsync process`" if fix else ""))
    if report["errors"]:
        raise typer.Exit(1)
