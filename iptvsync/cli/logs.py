"""``iptvsync logs``: the audit trail, filtered the way support asks ("I paid and got nothing")."""

from __future__ import annotations

import json
import time

import typer

from .app import app, load
from .output import JSON_OPTION, WIDE_OPTION, emit, text

COLUMNS = ("id", "at", "actor", "action", "subscription_id", "sale_code", "buyer_email", "detail")


@app.command()
def logs(ctx: typer.Context, since: str = typer.Option(None, help="e.g. 2d, 12h, or a date."),
         sale: str = typer.Option(None, help="Monetizze sale code."),
         email: str = typer.Option(None, help="Buyer email."),
         subscription: str = typer.Option(None, metavar="REF",
                                          help="Subscription id, key, Monetizze subscription code, username or"
                                               " buyer email (as `subs show` takes)."),
         action: str = typer.Option(None, help="Action prefix, e.g. panel, email, charge."),
         limit: int = typer.Option(200, metavar="N", help="At most N rows."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new rows as they come (Ctrl-C"
                                                                   " stops)."),
         as_json: bool = JSON_OPTION, wide: bool = WIDE_OPTION):
    """The audit trail, oldest first."""
    from ..ledger.audit import query_audit
    from ..ledger.db import Ledger
    from ..timeparse import since_to_datetime

    ledger = Ledger(load(ctx).ledger_path)
    sub_id = None
    if subscription:  # an id or Monetizze's code, as `subs show` takes; unknown: one line, exit 2
        from ..ops.subs import find  # only then: it brings the engine's rules along

        sub_id = find(ledger, subscription)["id"]
    filters = dict(since=since_to_datetime(since), sale=sale, email=email, subscription=sub_id,
                   action=action)
    rows = query_audit(ledger, limit=limit, **filters)
    emit(rows, COLUMNS, as_json=as_json, title="audit", wide=wide)
    last = rows[-1]["id"] if rows else 0
    while follow:
        time.sleep(1)
        for row in query_audit(ledger, after_id=last, limit=limit, **filters):
            typer.echo(json.dumps(row, default=str) if as_json else follow_line(row))
            last = row["id"]


def follow_line(row: dict) -> str:
    """One audit row as ``logs --follow`` prints it: what a row lacks is left out, not ``None``."""
    parts = [text(row["at"]), row["actor"], row["action"],
             f"sub={row['subscription_id']}" if row["subscription_id"] is not None else "",
             f"sale={row['sale_code']}" if row["sale_code"] else "", row["buyer_email"] or "",
             text(row["detail"]) if row["detail"] not in (None, "", "{}") else ""]
    return " ".join(str(p) for p in parts if p)
