"""``iptvsync process`` and ``iptvsync status``: the cron job and its health."""

from __future__ import annotations

import json

import typer

from .app import app, load
from .output import JSON_OPTION, emit, emit_one, text


@app.command()
def process(ctx: typer.Context,
            dry_run: bool = typer.Option(False, "--dry-run",
                                         help="Print the panel calls it would make; change nothing."),
            limit: int = typer.Option(None, help="At most N items per stage."),
            as_json: bool = JSON_OPTION):
    """Apply postbacks, sync panels, send emails, sweep expiries."""
    from ..engine.runner import AlreadyRunning, run_process

    cfg = load(ctx)
    if dry_run:
        from ..engine.plan import plan_process

        plan = plan_process(cfg, limit=limit)
        if as_json:
            typer.echo(json.dumps(plan, indent=2, default=str))
        else:
            emit(plan["calls"], ("subscription", "panel", "call", "why"), as_json=False,
                 title="panel calls process would make (dry run, nothing changed)")
            whatsapp = f" and {plan['whatsapp']} WhatsApp message(s)" if plan["whatsapp"] else ""
            typer.echo(f"would apply {plan['apply']} postback(s), send {plan['emails']} email(s){whatsapp}")
        return
    try:
        summary = run_process(cfg, limit=limit)
    except AlreadyRunning as exc:
        if as_json:
            typer.echo(json.dumps({"skipped": "locked", "reason": str(exc)}, indent=2))
        else:
            typer.echo(f"{exc}; exiting", err=True)
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        for stage in ("apply", "sweep", "sync", "mail", "whatsapp"):  # the order they run in
            if summary[stage] or stage != "whatsapp":
                typer.echo(f"{stage:6} " + "  ".join(f"{k}={v}" for k, v in summary[stage].items()))
    if summary["errors"]:  # a traceback, a template or key that fails: the run failed (status says so too)
        typer.echo(f"error: this run failed ({len(summary['errors'])} error(s)): {text(summary['errors'][0])}",
                   err=True)
        raise typer.Exit(1)


@app.command()
def status(ctx: typer.Context, as_json: bool = JSON_OPTION):
    """Queue depth, oldest pending, dead items, last run; exit 1 when unhealthy."""
    from ..ops.health import health

    cfg = load(ctx)
    report = health(cfg)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        emit_one(report["facts"], as_json=False)  # name  value lines, like `subs show`
        for problem in report["problems"]:
            typer.echo(f"UNHEALTHY: {text(problem)}", err=True)
        if not report["problems"]:
            typer.echo("healthy")
    if report["problems"]:
        raise typer.Exit(1)
