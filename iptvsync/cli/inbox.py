"""``iptvsync inbox``: the stored postbacks and what became of them."""

from __future__ import annotations

import typer

from ..ledger.queue import InboxStatus
from .app import app, load, writes
from .output import JSON_OPTION, WIDE_OPTION, emit, emit_one

inbox_app = typer.Typer(no_args_is_help=True, help="Stored postbacks and their outcome.")
app.add_typer(inbox_app, name="inbox")

COLUMNS = ("id", "received_at", "event", "kind", "sale_code", "parcela", "product_code", "buyer_email",
           "status", "reason", "times_seen")


def _ledger(ctx, *, write: bool = False):
    from ..ledger.db import Ledger

    cfg = load(ctx)
    if write:
        writes(ctx, cfg)
    return Ledger(cfg.ledger_path)


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
    row = inbox.show(Ledger(cfg.ledger_path), cfg, inbox_id)
    if as_json:
        emit_one(row, as_json=True)
        return
    fields = body_fields(row["body"])  # a 5 kB form is unreadable on one line: a field a line
    if fields:
        row["body"] = f"{len(fields)} field(s):"
    emit_one(row, as_json=False)
    for name, value in fields:
        typer.echo(f"  {_printable(name)} = {_printable(value)}")


def body_fields(body) -> list[tuple[str, str]]:
    """A stored body's fields, decoded: form pairs as posted, a JSON object flattened to the
    same bracket names (``venda[codigo]``). The ``json`` form field repeats them all: summed up."""
    from urllib.parse import parse_qsl

    if isinstance(body, dict):
        return list(_flatten(body))
    if "=" not in body or body.lstrip().startswith(("{", "[")):
        return []
    pairs = parse_qsl(body, keep_blank_values=True)
    return [(k, f"(the same payload as JSON, {len(v)} characters)" if k == "json" and len(v) > 80 else v)
            for k, v in pairs]


def _flatten(value, prefix: str = ""):
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _flatten(item, f"{prefix}[{key}]" if prefix else str(key))
    else:
        yield prefix, "" if value is None else str(value)


def _printable(value: str) -> str:
    """What a buyer typed, shown without its control characters doing anything to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


@inbox_app.command("retry")
def retry(ctx: typer.Context, ids: list[int] = typer.Argument(None, help="Row ids; none = all failed and unmapped.")):
    """Queue failed or unmapped postbacks again (e.g. after adding a product mapping)."""
    from ..ops import inbox
    from ..ops.actor import Actor

    count = inbox.retry(_ledger(ctx, write=True), ids or None, actor=Actor.cli())
    typer.echo(f"{count} postback(s) queued again; run `iptvsync process`")


@inbox_app.command("attach")
def attach(ctx: typer.Context, inbox_id: int = typer.Argument(..., help="Held inbox row id."),
           subscription: str = typer.Argument(..., help="Subscription id or key it renews.")):
    """Apply a held postback (recurring plan without assinatura) to an existing subscription."""
    from ..ops import inbox
    from ..ops.actor import Actor

    try:
        done = inbox.attach(_ledger(ctx, write=True), inbox_id, subscription, actor=Actor.cli())
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

    count = inbox.replay(_ledger(ctx, write=True), ids, actor=Actor.cli())
    typer.echo(f"{count} postback(s) queued for replay; run `iptvsync process`")


@inbox_app.command("prune")
def prune(ctx: typer.Context,
          older_than: str = typer.Option(..., "--older-than", metavar="AGE",
                                         help="e.g. 400d: postbacks received before this long ago.")):
    """Drop the raw body of settled postbacks older than AGE; their parsed facts and the audit stay."""
    from ..clock import human, now
    from ..ops import inbox
    from ..ops.actor import Actor
    from ..timeparse import parse_duration

    before = now() - parse_duration(older_than)
    count = inbox.prune(_ledger(ctx, write=True), before, actor=Actor.cli())
    typer.echo(f"{count} raw postback body(ies) received before {human(before)} dropped;"
               " their parsed facts and the audit trail stay")
