"""``iptvsync subs``: subscriptions and manual management."""

from __future__ import annotations

import typer

from .app import app, load, writes
from .output import JSON_OPTION, WIDE_OPTION, emit, emit_one, print_json

subs_app = typer.Typer(no_args_is_help=True, help="Subscriptions and manual management.")
app.add_typer(subs_app, name="subs")

COLUMNS = ("id", "state", "buyer_email", "paid_until", "product_code", "key", "sync_status", "username",
           "last_error")
REF = typer.Argument(..., help="Subscription id, key, username or buyer email.")


def _open(ctx, *, write: bool = False):
    from ..ledger.db import Ledger

    cfg = load(ctx)
    if write:
        writes(ctx, cfg)
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
    from itertools import islice

    from ..ops import subs

    cfg, ledger = _open(ctx)
    rows = iter(subs.list_subs(ledger, cfg, email=email, dead=dead, state=state, limit=limit + 1))
    emit(islice(rows, limit), COLUMNS, as_json=as_json, title="subscriptions", wide=wide)
    if next(rows, None) is not None:  # one more than asked for: say the list is cut
        typer.echo(f"note: only the newest {limit} are shown and there are more: --limit N shows N, --email or"
                   " --state narrows", err=True)


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
          phone: str = typer.Option(None, metavar="NUMBER",
                                    help="Buyer's WhatsApp number: the messages go there too when the product's"
                                         " channels name whatsapp."),
          as_json: bool = JSON_OPTION):
    """Create a manual subscription (a line + activation email on the next `process`)."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx, write=True)
    sub, added = subs.grant(ledger, cfg, email=email, product=product, days=days, key=key, name=name, note=note,
                            phone=phone, actor=Actor.cli())
    _report(sub, added, as_json)


@subs_app.command()
def extend(ctx: typer.Context, ref: str = REF, days: int = typer.Option(..., help="Days to add."),
           key: str = typer.Option(..., help="Your unique key for this extension (re-running is a no-op)."),
           note: str = typer.Option(None, help="Why, for the audit trail."), as_json: bool = JSON_OPTION):
    """Add days to a subscription, once per --key."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx, write=True)
    sub, added = subs.extend(ledger, cfg, ref, days, key, note, actor=Actor.cli())
    _report(sub, added, as_json)


def _report(sub: dict, added: bool, as_json: bool) -> None:
    row = {k: sub[k] for k in ("id", "key", "buyer_email", "paid_until", "desired_enabled")}
    if sub.get("buyer_phone"):  # WhatsApp too (`subs grant --phone`)
        row["buyer_phone"] = sub["buyer_phone"]
    row["added"] = added
    emit_one(row, as_json=as_json)
    if not added and not as_json:
        typer.echo("already done: this --key added these days before; nothing added")


@subs_app.command()
def suspend(ctx: typer.Context, ref: str = REF):
    """Disable the line now, whatever was paid, until `resume`."""
    from ..ops import subs
    from ..ops.actor import Actor

    cfg, ledger = _open(ctx, write=True)
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

    cfg, ledger = _open(ctx, write=True)
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

    cfg, ledger = _open(ctx, write=True)
    sub = subs.cancel(ledger, cfg, ref, immediately, actor=Actor.cli())
    typer.echo(f"subscription {sub['id']} cancelled (enabled: {bool(sub['desired_enabled'])})")


@subs_app.command()
def resend(ctx: typer.Context, ref: str = REF,
           kind: str = typer.Option("activation", help="activation | renewal | cancellation | refund | ...")):
    """Queue a message again on each of its channels (new, audited outbox rows)."""
    from ..mail.render import KINDS
    from ..ops import subs
    from ..ops.actor import Actor

    if kind not in KINDS:
        typer.echo(f"error: --kind must be one of {', '.join(KINDS)}", err=True)
        raise typer.Exit(2)
    _, ledger = _open(ctx, write=True)
    queued = subs.resend(ledger, ref, kind, actor=Actor.cli())
    if not queued:
        typer.echo("error: nothing queued: the subscription has neither an email nor a WhatsApp number", err=True)
        raise typer.Exit(1)
    names = {"email": "email", "whatsapp": "WhatsApp"}
    on = " and ".join(f"{names.get(channel, channel)} (outbox {row_id})" for channel, row_id in queued.items())
    typer.echo(f"queued {kind} on {on}; it goes out on the next `process`")


@subs_app.command()
def retry(ctx: typer.Context, ref: str = typer.Argument(
        None, help="One subscription; default: every dead subscription and failed or dead email.")):
    """Put dead panel work and failed emails and WhatsApp messages back in the queue."""
    from ..ops import subs
    from ..ops.actor import Actor

    _, ledger = _open(ctx, write=True)
    queued_subs, queued = subs.retry_by_channel(ledger, ref, actor=Actor.cli())
    whatsapp = f" and {queued['whatsapp']} WhatsApp message(s)" if queued["whatsapp"] else ""
    typer.echo(f"{queued_subs} subscription(s), {queued['email']} email(s){whatsapp} queued again"
               if whatsapp else f"{queued_subs} subscription(s) and {queued['email']} email(s) queued again")


@subs_app.command()
def phone(ctx: typer.Context, ref: str = REF,
          number: str = typer.Argument(None, metavar="NUMBER",
                                       help="The buyer's WhatsApp number, e.g. '11 98765-4321'."),
          clear: bool = typer.Option(False, "--clear", help="Remove the number: email only from then on.")):
    """Correct (or --clear) a buyer's WhatsApp number; its queued messages follow.

    Audited, the number masked. Once cleared, a later postback does not bring it back.
    """
    from ..errors import UsageError
    from ..ops.phones import set_phone

    if clear == (number is not None):
        raise UsageError("give the NUMBER or --clear (not both)" if clear else "give the NUMBER, or --clear to"
                                                                                  " remove it")
    cfg, ledger = _open(ctx, write=True)
    sub, moved = set_phone(ledger, cfg, ref, number)
    what = f"WhatsApp number is now {sub['buyer_phone']}" if number else "WhatsApp number removed (email only)"
    followed = f"; {moved} queued message(s) {'go there' if number else 'will not be sent'}" if moved else ""
    typer.echo(f"subscription {sub['id']}: {what}{followed}")


PHONE_COLUMNS = ("subscription", "buyer_email", "product", "phone", "issue", "inbox")


@subs_app.command()
def phones(ctx: typer.Context,
           backfill: bool = typer.Option(False, "--backfill", help="Write the numbers found (audited); without it"
                                                                   " nothing changes."),
           as_json: bool = JSON_OPTION, wide: bool = WIDE_OPTION):
    """WhatsApp numbers for subscriptions older than WhatsApp, from their stored postbacks.

    Nothing changes without --backfill; one without a stored postback waits for its next one.
    """
    from ..ops.phones import phones as read_phones

    cfg, ledger = _open(ctx, write=backfill)
    report = read_phones(ledger, cfg, backfill=backfill)
    if as_json:
        print_json(report)
        return
    emit(report["rows"], PHONE_COLUMNS, as_json=False, title="subscriptions without a WhatsApp number", wide=wide)
    typer.echo(f"{report['found']} number(s) found, {report['issues']} without a usable one, {report['no_postback']}"
               " without a stored postback; " + (f"{report['written']} written" if backfill else
                                                  "nothing written (add --backfill)"))


IMPORT_COLUMNS = ("outcome", "action", "username", "buyer_email", "subscription", "paid_until", "reason")


@subs_app.command("import")
def import_cmd(ctx: typer.Context,
               product: str = typer.Option(None, help="Product code the lines were sold as (a CSV may name it"
                                                      " per line)."),
               panel: str = typer.Option(None, help="Panel to read; default: the product's panel (or the"
                                                    " only one)."),
               csv_file: str = typer.Option(None, "--csv", metavar="FILE",
                                            help="CSV with email, product, username, paid_until (DD/MM/YYYY or"
                                                 " YYYY-MM-DD) and optionally subscription, password, line_id"
                                                 " (default: the panel's lines)."),
               since: str = typer.Option("400d", help="Monetizze sales to match emails against: since e.g. 400d."),
               dry_run: bool = typer.Option(False, "--dry-run", help="Show the matches, import nothing."),
               as_json: bool = JSON_OPTION, wide: bool = WIDE_OPTION):
    """Bring a running shop's lines in: one subscription owning each line.

    Lines are matched by email to Monetizze subscriptions when MONETIZZE_CONSUMER_KEY is set.

    No email is sent and no line changes; audited; a second run changes nothing.
    """
    from pathlib import Path

    from ..engine.runner import build_panels
    from ..errors import UsageError
    from ..ops.importer import import_lines
    from ..timeparse import since_to_datetime

    cfg, ledger = _open(ctx, write=not dry_run)
    name = panel or (cfg.products[product].panel if product in cfg.products else None) or (
        next(iter(cfg.panels)) if len(cfg.panels) == 1 else None)
    if name not in cfg.panels:
        raise UsageError(f"--panel {name} is not a [panels.<name>] of {cfg.path}" if name else
                         "--panel or a known --product is needed")
    report = import_lines(ledger, cfg, build_panels(cfg)[name], product=product,
                          csv_path=Path(csv_file) if csv_file else None, since=since_to_datetime(since),
                          dry_run=dry_run)
    if as_json:
        print_json(report)
        return
    emit(report["lines"], IMPORT_COLUMNS, as_json=False, title=f"lines of panel {name}", wide=wide)
    if not report["monetizze"]:
        typer.echo("note: Monetizze not asked (MONETIZZE_CONSUMER_KEY not set)")
    typer.echo(f"{report['matched']} matched, {report['unmatched']} unmatched, {report['ambiguous']} ambiguous,"
               f" {report['not importable']} not importable, {report['already imported']} already imported; "
               + ("nothing imported (--dry-run)" if dry_run else f"{report['imported']} imported"))
