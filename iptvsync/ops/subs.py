"""Operator actions on subscriptions. Each is one transaction, audited with its ``actor``
(``ops.actor.Actor``: ``cli:<unix user>`` from the CLI, ``web:<login>`` from the console)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

from ..clock import iso, now
from ..config import Config
from ..engine.derive import facts, recompute
from ..engine.model import STATES, subscription_state
from ..errors import IptvsyncError, UsageError
from ..ledger.db import Ledger
from ..ledger.outbox import EMAIL, WHATSAPP, queue
from ..ledger.queue import OUTBOX, SYNC, SyncStatus, not_in, requeue
from .actor import Actor, resolve

LIST_COLUMNS = ("id, key, product_code, buyer_email, paid_until, desired_enabled AS enabled, sync_status,"
                " username, attempts, last_error, cancelled_at, hold")


class NotFound(UsageError):
    """No subscription answers to that reference (exit code 2, like any usage error)."""


class KeyReused(IptvsyncError):
    """An operator ``--key`` already served another grant (exit code 1): nothing was added."""


EMAIL_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_DAYS = 3660  # ten years: more is a typo (100000 days is the year 2300)


def _check_request(days: int, key: str) -> None:
    if days <= 0:
        raise UsageError(f"--days must be positive, got {days}")
    if days > MAX_DAYS:
        raise UsageError(f"--days must be at most {MAX_DAYS} (ten years), got {days}")
    if not key.strip():
        raise UsageError("--key must not be empty: name this grant, e.g. --key pix-maria-2026-03")


def _check_key_reuse(conn: sqlite3.Connection, key: str, *, days: int, sub_id: int | None = None,
                     email: str | None = None, product: str | None = None) -> None:
    """``KeyReused`` when ``manual:key`` already served anything but this very request (``extend``
    of ``sub_id``, or ``grant`` to ``email`` of ``product``, by ``days``); the same request again
    passes, and then adds nothing."""
    k = f"manual:{key}"
    used = conn.execute("SELECT s.id, g.days, s.key, s.buyer_email, s.product_code FROM grants g"
                        " JOIN subscriptions s ON s.id = g.subscription_id WHERE g.grant_key = ?", (k,)).fetchone()
    if used is None and email is not None:
        used = conn.execute("SELECT id, NULL, key, buyer_email, product_code FROM subscriptions WHERE key = ?",
                            (k,)).fetchone()
    if used is None:
        return
    used_sub, used_days, used_key, used_email, used_product = used
    if email is None:
        same = used_sub == sub_id and used_days == days
    else:
        same = used_key == k and (used_email, used_product) == (email, product) and used_days in (None, days)
    if not same:
        served = f"{used_email}, product {used_product}" + (f", {used_days} days" if used_days else "")
        raise KeyReused(f"--key {key} already served subscription {used_sub} ({served}): nothing added;"
                        " use a new --key")


def find(ledger: Ledger, ref: str) -> dict:
    """A subscription by id, key, Monetizze subscription or sale code, username or (unique) buyer email."""
    row = None
    if ref.isdigit():
        row = ledger.one("SELECT * FROM subscriptions WHERE id = ?", (int(ref),))
    if row is None:
        row = ledger.one("SELECT * FROM subscriptions WHERE key = ? OR username = ?", (ref, ref))
    if row is None:  # Monetizze's subscription or sale code, as `inbox show` prints it
        row = ledger.one("SELECT * FROM subscriptions WHERE key IN (?, ?)", (f"sub:{ref}", f"sale:{ref}"))
    if row is None and "@" in ref:
        rows = ledger.query("SELECT * FROM subscriptions WHERE buyer_email = ?", (ref.strip().lower(),))
        if len(rows) > 1:
            raise NotFound(f"{ref} has {len(rows)} subscriptions: use an id ({', '.join(str(r['id']) for r in rows)})")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"no subscription {ref!r}")
    return row


def list_subs(ledger: Ledger, cfg: Config, *, email: str | None = None, dead: bool = False,
              state: str | None = None, limit: int = 100) -> Iterator[dict]:
    """Subscriptions, newest first, each with its ``state`` (``engine.model.subscription_state``),
    one at a time off the cursor: memory stays flat whatever ``limit``."""
    if state is not None and state not in STATES:
        raise UsageError(f"--state must be one of {', '.join(STATES)}, got {state!r}")
    where, params = ["1=1"], {"limit": -1 if state else limit}
    if email:
        where.append("buyer_email = :email")
        params["email"] = email.strip().lower()
    if dead:
        where.append(f"sync_status = '{SyncStatus.DEAD}'")
    cursor = ledger.conn.execute(f"SELECT {LIST_COLUMNS} FROM subscriptions WHERE {' AND '.join(where)}"
                                 " ORDER BY id DESC LIMIT :limit", params)
    return _with_state(ledger, cfg, cursor, state, limit)


def _with_state(ledger: Ledger, cfg: Config, cursor, state: str | None, limit: int) -> Iterator[dict]:
    t, given = now(), 0
    for row in cursor:
        if given >= limit:
            return
        row = dict(row)
        row = {"id": row["id"], "state": state_of(ledger, cfg, row["id"], t), **row}
        if state is None or row["state"] == state:
            given += 1
            yield row


def state_of(ledger: Ledger, cfg: Config, sub_id: int, at: datetime) -> str:
    sub = ledger.one("SELECT * FROM subscriptions WHERE id = ?", (sub_id,))
    return subscription_state(facts(ledger.conn, sub, cfg), at)


def show(ledger: Ledger, cfg: Config, ref: str) -> dict:
    """One subscription with its state, charges, grants and emails (never the password).

    ``paid_until`` is what was paid (no grace); ``access_until`` is when the line stops:
    ``paid_until`` plus ``grace_days`` while a renewal may still come, the same value the
    audit's ``access_until`` carries.
    """
    sub = find(ledger, ref)
    sub.pop("password_enc", None)
    sub = {"id": sub["id"], "state": state_of(ledger, cfg, sub["id"], now()), **sub,
           "access_until": iso(datetime.fromtimestamp(sub["desired_expires_at"], UTC))
           if sub["desired_expires_at"] else None}
    sub["charges"] = ledger.query("SELECT charge_key, status, paid_at, days FROM charges WHERE subscription_id = ?"
                                  " ORDER BY paid_at", (sub["id"],))
    sub["grants"] = ledger.query("SELECT grant_key, days, granted_at, actor, note FROM grants"
                                 " WHERE subscription_id = ?", (sub["id"],))
    sub["emails"] = ledger.query("SELECT id, kind, channel, cycle, status, attempts, last_error, message_id, sent_at"
                                 " FROM outbox WHERE subscription_id = ? ORDER BY id", (sub["id"],))
    return sub


def _grant(conn: sqlite3.Connection, ledger: Ledger, cfg: Config, sub_id: int, days: int, key: str,
           note: str | None, at: datetime, actor: Actor) -> bool:
    note = note or actor.reason
    cur = conn.execute("INSERT INTO grants (grant_key, subscription_id, days, granted_at, actor, note)"
                       " VALUES (:k, :s, :d, :at, :actor, :note) ON CONFLICT (grant_key) DO NOTHING",
                       {"k": key, "s": sub_id, "d": days, "at": iso(at), "actor": actor.name, "note": note})
    if cur.rowcount == 0:
        return False
    _, want = recompute(conn, sub_id, cfg, at)
    ledger.audit("grant.added", actor=actor.name, subscription_id=sub_id, days=days, grant_key=key, note=note,
                 access_until=want.access_until, **actor.detail())
    return True


def extend(ledger: Ledger, cfg: Config, ref: str, days: int, key: str, note: str | None = None, *,
           actor: Actor | None = None) -> tuple[dict, bool]:
    """Add ``days`` to an existing subscription, once per operator ``key``: the same request again
    adds nothing; the key reused for another subscription or number of days is ``KeyReused``."""
    _check_request(days, key)
    sub = find(ledger, ref)
    with ledger.tx() as conn:
        _check_key_reuse(conn, key, sub_id=sub["id"], days=days)
        added = _grant(conn, ledger, cfg, sub["id"], days, f"manual:{key}", note, now(), resolve(actor))
    return find(ledger, str(sub["id"])), added


def grant(ledger: Ledger, cfg: Config, *, email: str, product: str, days: int, key: str, name: str | None = None,
          note: str | None = None, phone: str | None = None, actor: Actor | None = None) -> tuple[dict, bool]:
    """A new manual subscription (a gift, a sale outside Monetizze), once per operator ``key``.
    With ``phone`` (normalised as a postback's), its messages go on WhatsApp too."""
    if product not in cfg.products:
        raise UsageError(f"--product {product} is not a [products.<code>] of {cfg.path}"
                         f" (known: {', '.join(cfg.products)})")
    _check_request(days, key)
    if not EMAIL_ADDRESS.fullmatch(email.strip()):  # the access data goes there: a typo is a buyer never served
        raise UsageError(f"--email must be the buyer's email address, such as maria@example.com, got {email!r}")
    buyer_phone = whatsapp_number(cfg, product, phone) if phone is not None else None
    p = cfg.products[product]
    t = now()
    with ledger.tx() as conn:
        _check_key_reuse(conn, key, sub_id=None, days=days, email=email.strip().lower(), product=product)
        conn.execute("INSERT INTO subscriptions (key, product_code, product_name, panel, buyer_email, buyer_name,"
                     " buyer_phone, recurring, created_at, updated_at) VALUES (:key, :product, :pname, :panel,"
                     " :email, :name, :phone, 0, :now, :now) ON CONFLICT (key) DO NOTHING",
                     {"key": f"manual:{key}", "product": product, "pname": p.name, "panel": p.panel,
                      "email": email.strip().lower(), "name": name, "phone": buyer_phone, "now": iso(t)})
        sub_id = conn.execute("SELECT id FROM subscriptions WHERE key = ?", (f"manual:{key}",)).fetchone()[0]
        added = _grant(conn, ledger, cfg, sub_id, days, f"manual:{key}", note, t, resolve(actor))
        if added:
            queue(conn, subscription_id=sub_id, kind="activation", cycle="1", to_addr=email.strip().lower(), now=t)
    return find(ledger, str(sub_id)), added


def whatsapp_number(cfg: Config, product: str, raw: str, option: str = "--phone") -> str:
    """``raw`` in E.164, as a postback's ``comprador[telefone]`` is read; a usage error when
    it is no WhatsApp number or the product does not send on WhatsApp."""
    from ..notify.phone import normalize

    if "whatsapp" not in cfg.channels(product):
        raise UsageError(f"{option}: product {product} does not send on WhatsApp (its channels:"
                         f" {', '.join(cfg.channels(product))})")
    phone = normalize(raw, cfg.whatsapp.default_region)
    if phone.e164 is None:
        raise UsageError(f"{option} {raw!r} is not a WhatsApp number ({phone.issue}); give it with the area code,"
                         " e.g. '11 98765-4321' or '+55 11 98765-4321'")
    return phone.e164


def set_hold(ledger: Ledger, cfg: Config, ref: str, hold: str, *, actor: Actor | None = None) -> tuple[dict, bool]:
    """Suspend (``hold="suspended"``) or resume (``"resumed"``) a line. Returns the subscription
    and whether anything changed: suspending twice, or resuming what is not suspended, writes
    nothing and audits nothing."""
    sub = find(ledger, ref)
    t = now()
    with ledger.tx() as conn:
        if not _hold_changes(conn, cfg, sub, hold):
            return sub, False
        conn.execute("UPDATE subscriptions SET hold = :h, hold_at = :t WHERE id = :id",
                     {"h": hold, "t": iso(t), "id": sub["id"]})
        _, want = recompute(conn, sub["id"], cfg, t)
        who = resolve(actor)
        ledger.audit(f"subscription.{hold}", actor=who.name, subscription_id=sub["id"],
                     buyer_email=sub["buyer_email"], enabled=want.enabled, **who.detail())
    return find(ledger, str(sub["id"])), True


def _hold_changes(conn: sqlite3.Connection, cfg: Config, sub: dict, hold: str) -> bool:
    if hold == "suspended":
        return sub["hold"] != "suspended"
    # resume lifts an operator's suspension, or a dispute's (policy on_dispute = "suspend")
    f = facts(conn, sub, cfg)
    return sub["hold"] == "suspended" or (f.disputed and f.on_dispute == "suspend" and sub["hold"] != "resumed")


def cancel(ledger: Ledger, cfg: Config, ref: str, immediately: bool, *, actor: Actor | None = None) -> dict:
    from ..engine.apply import queue_cancellation  # lazily: it parses postbacks, which `subs show` never does

    sub = find(ledger, ref)
    t = now()
    mode = "immediately" if immediately else "end_of_period"
    with ledger.tx() as conn:
        conn.execute("UPDATE subscriptions SET cancelled_at = COALESCE(cancelled_at, :t), cancel_mode = :m"
                     " WHERE id = :id", {"t": iso(t), "m": mode, "id": sub["id"]})
        before, want = recompute(conn, sub["id"], cfg, t)
        who = resolve(actor)
        ledger.audit("subscription.cancelled", actor=who.name, subscription_id=sub["id"],
                     buyer_email=sub["buyer_email"], mode=mode, **who.detail())
        queue_cancellation(conn, before, want, t)
    return find(ledger, str(sub["id"]))


def resend(ledger: Ledger, ref: str, kind: str, *, actor: Actor | None = None) -> dict[str, int]:
    """The message again, as new outbox rows (a buyer lost it), one per channel of the
    subscription. Audited. Returns the new row's id per channel (``{"email": 7, "whatsapp": 8}``)."""
    sub = find(ledger, ref)
    t = now()
    with ledger.tx() as conn:
        n = conn.execute("SELECT COUNT(*) FROM outbox WHERE subscription_id = ? AND kind = ?",
                         (sub["id"], kind)).fetchone()[0]
        cycle = f"resend:{n + 1}:{iso(t)}"
        queue(conn, subscription_id=sub["id"], kind=kind, cycle=cycle, to_addr=sub["buyer_email"], now=t)
        queued = dict(conn.execute("SELECT channel, id FROM outbox WHERE subscription_id = ? AND kind = ?"
                                   " AND cycle = ? ORDER BY id", (sub["id"], kind, cycle)).fetchall())
        who = resolve(actor)
        ledger.audit("email.resend", actor=who.name, subscription_id=sub["id"], buyer_email=sub["buyer_email"],
                     kind=kind, channels=",".join(queued) or None, **who.detail())
    return queued


def retry(ledger: Ledger, ref: str | None = None, *, actor: Actor | None = None) -> tuple[int, int]:
    """Dead (or backing-off) panel work and failed or dead messages go back in the queue now:
    one subscription's, or every one's. Returns (subscriptions, messages of every channel) requeued."""
    subs, messages = retry_by_channel(ledger, ref, actor=actor)
    return subs, sum(messages.values())


def retry_by_channel(ledger: Ledger, ref: str | None = None, *, actor: Actor | None = None
                     ) -> tuple[int, dict[str, int]]:
    """``retry``, the messages counted per channel (``{"email": 1, "whatsapp": 1}``)."""
    with ledger.tx() as conn:
        where, params = ("subscription_id = :sub", {"sub": find(ledger, ref)["id"]}) if ref else ("1=1", {})
        sub_id = params.get("sub")
        if ref:
            subs = requeue(conn, SYNC, ids=[sub_id], where=not_in(SYNC, SyncStatus.SYNCED))
        else:
            subs = requeue(conn, SYNC)
        messages = {channel: requeue(conn, OUTBOX, where=f"{where} AND channel = :channel",
                                     params={**params, "channel": channel}) for channel in (EMAIL, WHATSAPP)}
        if subs or any(messages.values()):
            who = resolve(actor)
            ledger.audit("subscription.retry", actor=who.name, subscription_id=sub_id, subscriptions=subs,
                         emails=messages[EMAIL], whatsapp=messages[WHATSAPP] or None, **who.detail())
    return subs, messages


def reveal_password(ledger: Ledger, cfg: Config, ref: str, *, actor: Actor | None = None) -> str:
    """The line's password in clear, for an operator reading it to a buyer. Audited (the row
    names who saw it, never the password)."""
    from ..credentials import decrypt

    sub = find(ledger, ref)
    if not sub["password_enc"]:
        raise UsageError(f"subscription {sub['id']} has no line password yet (its line is made on the next process)")
    password = decrypt(sub["password_enc"], cfg.keyring)
    who = resolve(actor)
    ledger.audit("password.revealed", actor=who.name, subscription_id=sub["id"], buyer_email=sub["buyer_email"],
                 **who.detail())
    return password
