"""``iptvsync mail``: check the email setup by sending one message, and operator alerts."""

from __future__ import annotations

import socket

import typer

from .app import app, load

mail_app = typer.Typer(no_args_is_help=True, help="Check the email setup; operator alerts.")
app.add_typer(mail_app, name="mail")


def _send(ctx: typer.Context, address: str, subject: str, text: str) -> None:
    from ..mail.probe import notice, send_reporting

    cfg = load(ctx)
    steps = send_reporting(cfg, notice(cfg, address, subject, text))
    for step in steps:
        typer.echo(f"{step.name:<9} {'ok' if step.ok else 'FAILED':<6} {step.detail}")
    if not steps or not steps[-1].ok:
        raise typer.Exit(1)


@mail_app.command("test")
def test(ctx: typer.Context, address: str = typer.Argument(..., help="Where to send the test email.")):
    """Send one test email through the configured backend; show each SMTP step's outcome."""
    _send(ctx, address, "iptvsync: email de teste",
          "Este é um email de teste do iptvsync: se você o recebeu, o envio de emails funciona.\n\n"
          f"Enviado de {socket.gethostname()}.\n")


@mail_app.command("alert")
def alert(ctx: typer.Context, address: str = typer.Argument(..., help="The operator's address."),
          unit: str = typer.Option("iptvsync", help="What failed (systemd passes the unit name).")):
    """Email the operator that a job failed, with `iptvsync status` (systemd OnFailure=)."""
    from ..ops.health import health

    report = health(load(ctx))
    problems = "\n".join(f"- {p}" for p in report["problems"]) or "- (status shows no problem now)"
    _send(ctx, address, f"iptvsync: {unit} falhou em {socket.gethostname()}",
          f"{unit} falhou. Veja: journalctl -u {unit} -n 50\n\nProblemas segundo `iptvsync status`:\n{problems}\n")
