"""``iptvsync subs``: subscriptions and manual management."""

from __future__ import annotations

import typer

from .app import app, load
from .output import JSON_OPTION, WIDE_OPTION, emit, emit_one

subs_app = typer.Typer(no_args_is_help=True, help="Subscriptions and manual management.")
app.add_typer(subs_app, name="subs")

COLUMNS = ("id", "state", "buyer_email", "paid_until", "product_code", "key", "sync_status", "username",
           "last_error")
REF = typer.Argument(..., help="Subscription id, key, username or buyer email.")


def _open(ctx):
    from ..ledger.db import Ledger

    cfg = load(ctx)
    return cfg, Ledger(cfg.ledger_path)


@subs_app.command("list")
def list_cmd(ctx: typer.Context, email: str = typer.Option(None, help="Only this buyer's subscriptions."),
             state: str = typer.Option(None, metavar="STATE",
                                       help="Only subscriptions in this state: active, grace, suspended, disputed,"
                                            " cancelled, expired, refunded or unpaid."),
             dead: bool = typer.Option(False, "--dead", help="Only subscriptions whose panel work is dead."),
             limit: int = typer.Option(100, metavar="N", help="At most N subscriptions."),
             as_json: bool = JSON_OPTION, wide: bool = WIDE_OPTION):
    """List subscriptions, newest first, with their state."""
    from ..ops import subs

    cfg, ledger = _open(ctx)
    emit(subs.list_subs(ledger, cfg, email=email, dead=dead, state=state, limit=limit), COLUMNS, as_json=as_json,
         title="subscriptions", wide=wide)


@subs_app.command()
def show(ctx: typer.Context, ref: str = REF, as_json: bool = JSON_OPTION,
         timeline: bool = typer.Option(False, "--timeline", help="Also every postback, charge, panel call, email"
                                                                   " and manual action, newest first.")):
    """One subscription with its state, charges, grants and emails (never the password).

    paid_until is what was paid; access_until adds the grace days while a renewal may come.
    """
    from ..ops import subs

    cfg, ledger = _open(ctx)
    sub = subs.show(ledger, cfg, ref)
    if not timeline:
        emit_one(sub, as_json=as_json)
        return
    from ..ops.timeline import timeline as events

    found = events(ledger, sub)
    if as_json:
        emit_one({**sub, "timeline": found}, as_json=True)
        return
    emit_one(sub, as_json=False)
    rows = [{"at": e["at"], "what": e["what"], "actor": e["actor"],
             "detail": " ".join(f"{k}={v}" for k, v in sorted(e["detail"].items()))} for e in found]
    emit(rows, ("at", "what", "actor", "detail"), as_json=False, title="timeline")


@subs_app.command()
def grant(ctx: typer.Context, email: str = typer.Option(..., help="Buyer email."),
          product: str = typer.Option(..., help="Product code from [products]."),
          days: int = typer.Option(..., help="Days of access."),
          key: str = typer.Option(..., help="Your unique key for this grant (re-running with it is a no-op)."),
          name: str = typer.Option(None, help="Buyer name."),
          note: str = typer.Option(None, help="Why, for the audit trail."),
          as_json: bool = JSON_OPTION):
    """Create a manual subscription (a line + activation email on the next `process`)."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx)
    sub, added = subs.grant(ledger, cfg, email=email, product=product, days=days, key=key, name=name, note=note,
                           actor=Actor.cli())
    _report(sub, added, as_json)


@subs_app.command()
def extend(ctx: typer.Context, ref: str = REF, days: int = typer.Option(..., help="Days to add."),
           key: str = typer.Option(..., help="Your unique key for this extension (re-running is a no-op)."),
           note: str = typer.Option(None, help="Why, for the audit trail."), as_json: bool = JSON_OPTION):
    """Add days to a subscription, once per --key."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx)
    sub, added = subs.extend(ledger, cfg, ref, days, key, note, actor=Actor.cli())
    _report(sub, added, as_json)


def _report(sub: dict, added: bool, as_json: bool) -> None:
    row = {k: sub[k] for k in ("id", "key", "buyer_email", "paid_until", "desired_enabled")}
    row["added"] = added
    emit_one(row, as_json=as_json)
    if not added and not as_json:
        typer.echo("that --key was used before: nothing added")


@subs_app.command()
def suspend(ctx: typer.Context, ref: str = REF):
    """Disable the line now, whatever was paid, until `resume`."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx)
    sub, changed = subs.set_hold(ledger, cfg, ref, "suspended", actor=Actor.cli())
    if not changed:
        typer.echo(f"subscription {sub['id']} is already suspended: nothing changed")
        return
    typer.echo(f"subscription {sub['id']} suspended; the line is disabled on the next `process`")


@subs_app.command()
def resume(ctx: typer.Context, ref: str = REF):
    """Lift a suspension (operator or dispute); the line follows what is paid."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx)
    sub, changed = subs.set_hold(ledger, cfg, ref, "resumed", actor=Actor.cli())
    if not changed:
        typer.echo(f"subscription {sub['id']} is not suspended: nothing changed")
        return
    typer.echo(f"subscription {sub['id']} resumed (enabled: {bool(sub['desired_enabled'])})")


@subs_app.command()
def cancel(ctx: typer.Context, ref: str = REF,
           immediately: bool = typer.Option(False, "--immediately", help="Cut access now, not at paid_until.")):
    """Cancel a subscription; access runs to paid_until unless --immediately."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx)
    sub = subs.cancel(ledger, cfg, ref, immediately, actor=Actor.cli())
    typer.echo(f"subscription {sub['id']} cancelled (enabled: {bool(sub['desired_enabled'])})")


@subs_app.command()
def resend(ctx: typer.Context, ref: str = REF,
           kind: str = typer.Option("activation", help="activation | renewal | cancellation | refund | ...")):
    """Queue an email again (a new, audited outbox row)."""
    from ..mail.render import KINDS
    from ..ops import subs
    from ..ops.actor import Actor

    if kind not in KINDS:
        typer.echo(f"error: --kind must be one of {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    _, ledger = _open(ctx)
    outbox_id = subs.resend(ledger, ref, kind, actor=Actor.cli())
    typer.echo(f"queued {kind} email (outbox {outbox_id}); it goes out on the next `process`")


@subs_app.command()
def retry(ctx: typer.Context, ref: str = typer.Argument(
        None, help="One subscription; default: every dead subscription and failed or dead email.")):
    """Put dead panel work and failed emails back in the queue."""
    from ..ops import subs
    from ..ops.actor import Actor

    _, ledger = _open(ctx)
    queued_subs, queued_emails = subs.retry(ledger, ref, actor=Actor.cli())
    typer.echo(f"{queued_subs} subscription(s) and {queued_emails} email(s) queued again")
