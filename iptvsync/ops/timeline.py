"""A subscription's timeline: every postback, charge, panel call, email and manual action in
time order, so "I paid and got nothing" is answered on one screen (the console's subscription
page; ``subs show`` can print it too).

A merge: each source is read newest first to a limit, the lists joined, sorted by (time,
source, id) and cut to the page. Sources: the inbox rows of the subscription's sales (and the
ones attached to it), the audit rows about it (charges, panel calls, emails sent or failed,
every operator's action), and the outbox rows still waiting or given up.
"""

from __future__ import annotations

import json
from typing import Any

from ..ledger.db import Ledger
from ..ledger.queue import MailStatus
from .inbox import readable

LIMIT = 200

#: source -> its order among events of the same second (a postback before what it caused)
ORDER = {"postback": 0, "audit": 1, "email": 2}


def timeline(ledger: Ledger, sub: dict[str, Any], limit: int = LIMIT) -> list[dict[str, Any]]:
    """Events newest first: ``at`` (ISO UTC), ``source``, ``what`` (a machine name the console
    labels), ``actor`` and ``detail`` (a dict of plain facts, never a secret), ``ref`` (an id)."""
    events = _postbacks(ledger, sub, limit) + _audit(ledger, sub["id"], limit) + _emails(ledger, sub["id"], limit)
    events.sort(key=lambda e: (e["at"], ORDER[e["source"]], e["ref"]), reverse=True)
    return events[:limit]


def _postbacks(ledger: Ledger, sub: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    sales = [r["sale_code"] for r in ledger.query("SELECT DISTINCT sale_code FROM charges WHERE subscription_id = ?",
                                                  (sub["id"],))]
    key = sub["key"] or ""
    code = key.partition(":")[2] if key.startswith(("sub:", "sale:")) else None
    if key.startswith("sale:") and code not in sales:
        sales.append(code)
    rows: dict[int, dict] = {}
    for sale in sales[:50]:
        for r in ledger.query("SELECT id, received_at, event, kind, sale_code, parcela, status, reason, source"
                              " FROM inbox WHERE sale_code = ? ORDER BY id DESC LIMIT ?", (sale, limit)):
            rows[r["id"]] = r
    for r in ledger.query("SELECT id, received_at, event, kind, sale_code, parcela, status, reason, source"
                          " FROM inbox WHERE attached_to = ? ORDER BY id DESC LIMIT ?", (key, limit)):
        rows[r["id"]] = r
    return [{"at": r["received_at"], "source": "postback", "what": f"postback.{r['kind']}", "actor": r["source"],
             "ref": r["id"], "detail": {k: r[k] for k in ("event", "sale_code", "parcela", "status", "reason")
                                        if r[k] is not None}} for r in rows.values()]


def _audit(ledger: Ledger, sub_id: int, limit: int) -> list[dict[str, Any]]:
    rows = ledger.query("SELECT id, at, actor, action, detail FROM audit WHERE subscription_id = ?"
                        " ORDER BY id DESC LIMIT ?", (sub_id, limit))
    return [{"at": r["at"], "source": "audit", "what": r["action"], "actor": r["actor"], "ref": r["id"],
             "detail": _detail(r["detail"])} for r in rows]


def _emails(ledger: Ledger, sub_id: int, limit: int) -> list[dict[str, Any]]:
    """Emails not yet sent (or given up): a sent one is in the audit already."""
    rows = ledger.query("SELECT id, kind, status, attempts, last_error, created_at FROM outbox"
                        " WHERE subscription_id = ? AND status != ? ORDER BY id DESC LIMIT ?",
                        (sub_id, MailStatus.SENT, limit))
    return [{"at": r["created_at"], "source": "email", "what": f"outbox.{r['status']}", "actor": "process",
             "ref": r["id"], "detail": {k: r[k] for k in ("kind", "attempts", "last_error") if r[k]}} for r in rows]


def _detail(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return readable(value) if isinstance(value, dict) else {}
