"""The outbox: buyer messages queued in the same transaction as the change that causes them,
one row per message and channel.

Unique on (subscription, kind, cycle, channel), so applying the same change twice queues one
email and one WhatsApp message. A subscription hears on WhatsApp when it has a number
(``buyer_phone``), which ``remember_phone`` sets only for products whose ``channels`` name
whatsapp; every ``queue`` then adds the WhatsApp row beside the email's.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from ..clock import iso

#: kinds that carry or depend on working credentials: held until the line is verified in sync
NEEDS_SYNC = {"activation", "renewal", "resumed"}
EMAIL, WHATSAPP = "email", "whatsapp"


def queue(conn: sqlite3.Connection, *, subscription_id: int, kind: str, cycle: str, to_addr: str | None,
          now: datetime, context: dict | None = None) -> bool:
    """Queue one message on each channel of the subscription, unless that (subscription, kind,
    cycle, channel) already exists. True if any was queued."""
    values = {"sub": subscription_id, "kind": kind, "cycle": cycle, "to": to_addr,
              "needs_sync": int(kind in NEEDS_SYNC), "context": json.dumps(context or {}), "now": iso(now)}
    queued = 0
    if to_addr:
        queued += conn.execute(
            "INSERT INTO outbox (subscription_id, kind, cycle, to_addr, needs_sync, context, created_at)"
            " VALUES (:sub, :kind, :cycle, :to, :needs_sync, :context, :now)"
            " ON CONFLICT (subscription_id, kind, cycle, channel) DO NOTHING", values).rowcount
    queued += conn.execute(
        "INSERT INTO outbox (subscription_id, kind, cycle, channel, to_addr, needs_sync, context, created_at)"
        f" SELECT :sub, :kind, :cycle, '{WHATSAPP}', buyer_phone, :needs_sync, :context, :now FROM subscriptions"
        " WHERE id = :sub AND buyer_phone IS NOT NULL"
        " ON CONFLICT (subscription_id, kind, cycle, channel) DO NOTHING", values).rowcount
    return queued > 0


#: ``phone_issue`` of a number the operator removed (``subs phone --clear``): email only from then on.
PHONE_CLEARED = "cleared by the operator (subs phone --clear)"


def remember_phone(conn: sqlite3.Connection, sub: dict, raw: str | None, region: str) -> dict:
    """Give a subscription that hears on WhatsApp its buyer's number (E.164), or say why it has
    none (``phone_issue``: email only, counted by ``status``). A number once set is kept."""
    from ..notify.phone import normalize

    if sub.get("phone_issue") == PHONE_CLEARED:  # `subs phone --clear`: a postback's number does not come back
        return sub
    phone = normalize(raw, region)
    if phone.e164 is None and sub.get("phone_issue") == phone.issue:
        return sub
    row = conn.execute("UPDATE subscriptions SET buyer_phone = :phone, phone_issue = :issue WHERE id = :id"
                       " RETURNING *", {"phone": phone.e164, "issue": phone.issue, "id": sub["id"]}).fetchone()
    return dict(row)


def note_gateway(conn: sqlite3.Connection, gateway: str, now: datetime, *, ack: bool = False,
                 failure: str | None = None, disconnected: bool = False) -> None:
    """Remember the gateway's last acknowledged send, or its last failure (``status`` reads it)."""
    t = iso(now)
    conn.execute(
        "INSERT INTO gateway_state (id, gateway, last_ack_at, last_failure_at, last_failure, disconnected,"
        " updated_at) VALUES (1, :gw, :ack, :failed_at, :failure, :disc, :t)"
        " ON CONFLICT (id) DO UPDATE SET gateway = :gw, updated_at = :t,"
        " last_ack_at = COALESCE(:ack, last_ack_at), disconnected = :disc,"
        " last_failure_at = COALESCE(:failed_at, last_failure_at), last_failure = COALESCE(:failure, last_failure)",
        {"gw": gateway, "ack": t if ack else None, "failed_at": None if ack else t,
         "failure": None if ack else (failure or "")[:300], "disc": int(bool(disconnected) and not ack), "t": t})
