"""``iptvsync notify``: check a buyer-message channel by sending one message."""

from __future__ import annotations

import typer

from .app import app, load, writes

notify_app = typer.Typer(no_args_is_help=True, help="Check the WhatsApp setup by sending one message.")
app.add_typer(notify_app, name="notify")


@notify_app.command("test")
def test(ctx: typer.Context,
         channel: str = typer.Argument(..., help="The channel to test: whatsapp."),
         number: str = typer.Argument(..., help="Where to send it, e.g. +5511987654321.")):
    """Send one test message through the configured gateway; show each step's outcome."""
    from ..errors import UsageError
    from ..ops.notify import send_test

    if channel != "whatsapp":
        raise UsageError(f"channel must be whatsapp (email: `iptvsync mail test ADDRESS`), got {channel!r}")
    cfg = load(ctx)
    writes(ctx, cfg)  # the gateway's outcome is noted in the ledger
    steps = send_test(cfg, number)
    for step in steps:
        typer.echo(f"{step.name:<7} {'ok' if step.ok else 'FAILED':<6} {step.detail}")
    if not steps[-1].ok:
        raise typer.Exit(1)
