"""``iptvsync admin``: the web console's operators, and the console itself (``admin serve``)."""

from __future__ import annotations

import sys

import typer

from .app import app, load, writes
from .output import JSON_OPTION, WIDE_OPTION, emit

admin_app = typer.Typer(no_args_is_help=True, help="The web admin console: operators and the server.")
user_app = typer.Typer(no_args_is_help=True, help="Operators who may log in to the console.")
admin_app.add_typer(user_app, name="user")
app.add_typer(admin_app, name="admin")

NAME = typer.Argument(..., help="Operator name (lowercase letters, digits, . _ -).")
PASSWORD_STDIN = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin.")


def _open(ctx, *, write: bool = True):
    from ..ledger.db import Ledger

    cfg = load(ctx)
    if write:
        writes(ctx, cfg)  # `restore` and `rekey` refuse meanwhile; this refuses during them
    return cfg, Ledger(cfg.ledger_path)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_app.command("add")
def add(ctx: typer.Context, name: str = NAME,
        role: str = typer.Option(..., help="owner (everything) or support (look, resend access, retry)."),
        language: str = typer.Option("pt-BR", help="The console's language for this operator: pt-BR or en."),
        password_stdin: bool = PASSWORD_STDIN):
    """Add an operator (asks for the password twice unless --password-stdin)."""
    from ..ops import operators
    from ..ops.actor import Actor

    _, ledger = _open(ctx)
    operators.add(ledger, name, role, _password(password_stdin), language=language, actor=Actor.cli())
    typer.echo(f"operator {name} added ({role}); `iptvsync admin user totp {name}` adds a second factor")


@user_app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = JSON_OPTION, wide: bool = WIDE_OPTION):
    """List operators with their role, TOTP and open sessions."""
    from ..ops import operators

    _, ledger = _open(ctx, write=False)
    rows = [{**r, "totp": bool(r["totp"])} for r in operators.list_operators(ledger)]
    emit(rows, ("name", "role", "totp", "sessions", "language", "created_at"), as_json=as_json,
         title="operators", wide=wide)


@user_app.command("passwd")
def passwd(ctx: typer.Context, name: str = NAME, password_stdin: bool = PASSWORD_STDIN):
    """Set an operator's password; their sessions end."""
    from ..ops import operators
    from ..ops.actor import Actor

    _, ledger = _open(ctx)
    operators.get(ledger, name)  # an unknown name fails before the prompt
    ended = operators.set_password(ledger, name, _password(password_stdin), actor=Actor.cli())
    typer.echo(f"password of {name} changed; {ended} session(s) ended")


@user_app.command("remove")
def remove(ctx: typer.Context, name: str = NAME):
    """Remove an operator and end their sessions."""
    from ..ops import operators
    from ..ops.actor import Actor

    _, ledger = _open(ctx)
    operators.remove(ledger, name, actor=Actor.cli())
    typer.echo(f"operator {name} removed")


@user_app.command("logout")
def logout(ctx: typer.Context, name: str = NAME):
    """End every session of an operator."""
    from ..ops import operators
    from ..ops.actor import Actor

    _, ledger = _open(ctx)
    ended = operators.logout(ledger, name, actor=Actor.cli())
    typer.echo(f"{ended} session(s) of {name} ended")


@user_app.command("totp")
def totp(ctx: typer.Context, name: str = NAME,
         off: bool = typer.Option(False, "--off", help="Remove the operator's second factor instead.")):
    """Give an operator a new TOTP secret (printed once, for the authenticator app)."""
    from ..ops import operators
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx)
    if off:
        operators.disable_totp(ledger, name, actor=Actor.cli())
        typer.echo(f"TOTP of {name} removed")
        return
    secret, uri = operators.enable_totp(ledger, cfg, name, actor=Actor.cli())
    typer.echo(f"TOTP secret of {name} (type it in the authenticator app, or open the URI):\n{secret}\n{uri}")


@admin_app.command("serve")
def serve(ctx: typer.Context,
          host: str = typer.Option(None, help="Listen address (default [admin] host, 127.0.0.1)."),
          port: int = typer.Option(None, help="Listen port (default [admin] port, 8081).")):
    """Run the admin console (a process of its own, never the receiver) until SIGTERM."""
    from ..admin.server import serve as run_server

    cfg = load(ctx, {"admin.host": host, "admin.port": port})
    writes(ctx, cfg)  # sessions and operators' actions go into the ledger for as long as it runs
    run_server(cfg, on_ready=lambda url: typer.echo(f"iptvsync admin console on {url}", err=True))
