"""Operator actions on the stored postbacks: list, show (redacted), retry, replay, attach, prune.

The CLI's ``inbox`` commands and the admin console's Postbacks page both call these, so the
redaction and the audit rows (with their ``actor``) are the same whoever asks.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..config import Config
from ..errors import UsageError
from ..ledger import inbox
from ..ledger.db import Ledger
from ..ledger.queue import INBOX, InboxStatus
from .actor import Actor, resolve

AttachError = inbox.AttachError


def list_rows(ledger: Ledger, *, status: str | None = None, sale: str | None = None, email: str | None = None,
              since: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
    if status is not None and status not in set(InboxStatus):
        raise UsageError(f"--status must be one of {', '.join(InboxStatus)}, got {status!r}")
    return readable(inbox.list_inbox(ledger, status=status, sale=sale, email=email, since=since, limit=limit))


def show(ledger: Ledger, cfg: Config, inbox_id: int) -> dict[str, Any]:
    """One stored postback with its parsed fields and its body, the secrets blanked again
    (the receiver stores bodies blanked; rows that came any other way may not be)."""
    from ..monetizze.redact import redact

    row = inbox.get(ledger, inbox_id)
    if row is None:
        raise UsageError(f"no stored postback with id {inbox_id} (see `iptvsync inbox list`)")
    body = row.pop("body")
    body = body if isinstance(body, bytes) else str(body or "").encode()
    body = redact(body, cfg.secrets.chave_unica)
    for product_key in {p.key for p in cfg.products.values() if p.key} | _own_product_key(body, row):
        body = redact(body, product_key)  # produto[chave] is a secret too, configured or not
    row["body"] = body.decode("utf-8", "replace")
    if row.get("content_type", "") and "json" in (row["content_type"] or ""):
        try:
            row["body"] = readable(json.loads(row["body"]))
        except ValueError:
            pass
    return readable(row)


def readable(value: Any) -> Any:
    """``value`` with every lone surrogate (a JSON ``"\\ud800"`` escape), in its strings and
    keys alike, as U+FFFD: nothing that pages, terminals or JSON output encode can fail on it."""
    from ..monetizze.postback import without_surrogates

    if isinstance(value, str):
        return without_surrogates(value)
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value


def _own_product_key(body: bytes, row: dict[str, Any]) -> set[str]:
    """The ``produto[chave]`` this body carries, whether or not [products] knows it."""
    from ..errors import MalformedPostback
    from ..monetizze.postback import parse

    try:
        key = parse(body, row.get("content_type"))[1].product_key
    except (MalformedPostback, ValueError):
        return set()
    return {key} if key and len(key) >= 8 else set()


def retry(ledger: Ledger, ids: list[int] | None = None, *, actor: Actor | None = None,
          only_stuck: bool = False) -> int:
    """Failed or unmapped postbacks (or the given ids) back in the queue; how many.

    ``only_stuck``: the given ids only if failed or unmapped (the console's retry, which a
    support operator may do: applying an applied postback again is a replay, an owner's)."""
    if only_stuck and ids:
        marks = ", ".join("?" * len(ids))
        stuck = {r["id"] for r in ledger.query(f"SELECT id FROM inbox WHERE id IN ({marks}) AND status IN"
                                               f" ({', '.join('?' * len(INBOX.stuck))})", (*ids, *INBOX.stuck))}
        if set(ids) - stuck:
            raise UsageError(f"postback(s) {', '.join(str(i) for i in ids if i not in stuck)} are not failed or"
                             " unmapped: nothing to retry")
    who = resolve(actor)
    return inbox.retry(ledger, ids, actor=who.name, detail=who.detail())


def replay(ledger: Ledger, ids: list[int], *, actor: Actor | None = None) -> int:
    """Applied postbacks applied again on the next ``process`` (safe: every effect is keyed)."""
    who = resolve(actor)
    return inbox.retry(ledger, ids, action="inbox.replay", actor=who.name, detail=who.detail())


def attach(ledger: Ledger, inbox_id: int, subscription: str, *, actor: Actor | None = None) -> dict[str, Any]:
    """A held postback applied to an existing subscription (by id or key) on the next ``process``."""
    who = resolve(actor)
    return inbox.attach(ledger, inbox_id, subscription, actor=who.name, detail=who.detail())


def prune(ledger: Ledger, before: datetime, *, actor: Actor | None = None) -> int:
    """Raw bodies of settled postbacks received before ``before`` dropped; how many."""
    who = resolve(actor)
    return inbox.prune_bodies(ledger, before, actor=who.name, detail=who.detail())
