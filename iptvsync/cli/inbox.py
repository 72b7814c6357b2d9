"""``iptvsync inbox``: the stored postbacks and what became of them."""

from __future__ import annotations

import typer

from ..ledger.queue import InboxStatus
from .app import app, load
from .output import JSON_OPTION, WIDE_OPTION, emit, emit_one

inbox_app = typer.Typer(no_args_is_help=True, help="Stored postbacks and their outcome.")
app.add_typer(inbox_app, name="inbox")

COLUMNS = ("id", "received_at", "event", "kind", "sale_code", "parcela", "product_code", "buyer_email",
           "status", "reason", "times_seen")


def _ledger(ctx):
    from ..ledger.db import Ledger

    return Ledger(load(ctx).ledger_path)


@inbox_app.command("list")
def list_cmd(ctx: typer.Context,
             status: str = typer.Option(None, help=" | ".join(InboxStatus)),
             sale: str = typer.Option(None, help="Monetizze sale code."),
             email: str = typer.Option(None, help="Buyer email."),
             since: str = typer.Option(None, help="Only newer than this, e.g. 2d, 12h."),
             limit: int = typer.Option(50, help="At most this many rows."),
             as_json: bool = JSON_OPTION, wide: bool = WIDE_OPTION):
    """List stored postbacks, newest first."""
    from ..ops import inbox
    from ..timeparse import since_to_datetime

    rows = inbox.list_rows(_ledger(ctx), status=status, sale=sale, email=email,
                           since=since_to_datetime(since), limit=limit)
    emit(rows, COLUMNS, as_json=as_json, title="inbox", wide=wide)


@inbox_app.command("show")
def show(ctx: typer.Context, inbox_id: int = typer.Argument(..., help="Inbox row id."),
         as_json: bool = JSON_OPTION):
    """Show one stored postback with its parsed fields and (redacted) body."""
    from ..ledger.db import Ledger
    from ..ops import inbox

    cfg = load(ctx)
    emit_one(inbox.show(Ledger(cfg.ledger_path), cfg, inbox_id), as_json=as_json)


@inbox_app.command("retry")
def retry(ctx: typer.Context, ids: list[int] = typer.Argument(None, help="Row ids; none = all failed and unmapped.")):
    """Queue failed or unmapped postbacks again (e.g. after adding a product mapping)."""
    from ..ops import inbox
    from ..ops.actor import Actor

    count = inbox.retry(_ledger(ctx), ids or None, actor=Actor.cli())
    typer.echo(f"{count} postback(s) queued again; run `iptvsync process`")


@inbox_app.command("attach")
def attach(ctx: typer.Context, inbox_id: int = typer.Argument(..., help="Held inbox row id."),
           subscription: str = typer.Argument(..., help="Subscription id or key it renews.")):
    """Apply a held postback (recurring plan without assinatura) to an existing subscription."""
    from ..ops import inbox
    from ..ops.actor import Actor

    try:
        done = inbox.attach(_ledger(ctx), inbox_id, subscription, actor=Actor.cli())
    except inbox.AttachError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"inbox {done['inbox_id']} attached to subscription {done['subscription_id']} "
               f"({done['key']}); run `iptvsync process`")


@inbox_app.command("replay")
def replay(ctx: typer.Context, ids: list[int] = typer.Argument(..., help="Row ids to apply again.")):
    """Apply already-applied postbacks again (safe: every effect is keyed)."""
    from ..ops import inbox
    from ..ops.actor import Actor

    count = inbox.replay(_ledger(ctx), ids, actor=Actor.cli())
    typer.echo(f"{count} postback(s) queued for replay; run `iptvsync process`")


@inbox_app.command("prune")
def prune(ctx: typer.Context,
          older_than: str = typer.Option(..., "--older-than", metavar="AGE",
                                         help="e.g. 400d: postbacks received before this long ago.")):
    """Drop the raw body of settled postbacks older than AGE; their parsed facts and the audit stay."""
    from ..clock import now
    from ..ops import inbox
    from ..ops.actor import Actor
    from ..timeparse import parse_duration

    before = now() - parse_duration(older_than)
    count = inbox.prune(_ledger(ctx), before, actor=Actor.cli())
    typer.echo(f"{count} raw postback body(ies) received before {before:%Y-%m-%d %H:%M} UTC dropped;"
               " their parsed facts and the audit trail stay")
