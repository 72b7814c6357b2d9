"""``subs phones``: the WhatsApp numbers of subscriptions that predate WhatsApp (issue 21).

A subscription gets its buyer's number from a postback, the first time the apply stage sees
it with WhatsApp in its product's channels. One bought before WhatsApp was enabled would
wait for its next postback (a renewal, a month away, or never for a cancelled one). This
reads the number from the latest stored postback of each such subscription instead:
``comprador[telefone]``, normalised exactly as the apply stage does (``notify/phone``).

An explicit command rather than a side effect of queuing a message: it decompresses and
parses stored bodies (work no ``process`` transaction should carry), and the operator sees
who would start hearing on WhatsApp before anything changes. Without ``backfill`` nothing
is written; with it, each subscription is updated and audited (``subscription.phone``) in
one transaction, and only if no postback gave it a number meanwhile. Messages already queued
stay email only; the next ones go on WhatsApp too (``subs resend`` for an activation).
"""

from __future__ import annotations

from ..config import Config
from ..ledger.db import Ledger
from ..ledger.inbox import raw_body
from ..ledger.outbox import PHONE_CLEARED, WHATSAPP
from ..ledger.queue import MailStatus

#: Stored postbacks read per subscription, newest first, looking for a usable number.
PER_SUBSCRIPTION = 5
NO_POSTBACK = "no stored postback (the next one gives it its number)"


def candidates(ledger: Ledger, cfg: Config) -> list[dict]:
    """Subscriptions of a WhatsApp product never given a number nor a reason for none."""
    codes = [code for code in cfg.products if "whatsapp" in cfg.channels(code)]
    if not codes:
        return []
    marks = ", ".join("?" * len(codes))
    return ledger.query(f"SELECT id, key, buyer_email, product_code FROM subscriptions WHERE buyer_phone IS NULL"
                        f" AND phone_issue IS NULL AND product_code IN ({marks}) ORDER BY id", codes)


def _postbacks(ledger: Ledger, subs: list[dict]) -> dict[int, list[int]]:
    """The ids of each subscription's stored postbacks, newest first (one pass over the inbox's
    codes: ``subscription_code`` has no index of its own)."""
    by_code: dict[tuple[str, str], int] = {}
    for sub in subs:
        kind, _, code = sub["key"].partition(":")
        if kind in ("sub", "sale") and code:
            by_code[(kind, code.split("+")[0])] = sub["id"]  # an order bump's item: its sale's postbacks
    found: dict[int, list[int]] = {}
    if not by_code:
        return found
    for inbox_id, sale, subscription in ledger.conn.execute(
            "SELECT id, sale_code, subscription_code FROM inbox WHERE is_test = 0 ORDER BY id DESC"):
        sub_id = by_code.get(("sub", subscription)) or by_code.get(("sale", sale))
        if sub_id is not None and len(found.setdefault(sub_id, [])) < PER_SUBSCRIPTION:
            found[sub_id].append(inbox_id)
    return found


def _phone_of(ledger: Ledger, inbox_id: int) -> str | None:
    """``comprador[telefone]`` of one stored postback as typed; None when the body is gone or unreadable."""
    from ..monetizze.postback import parse

    row = ledger.one("SELECT body, body_encoding, content_type FROM inbox WHERE id = ?", (inbox_id,))
    body = raw_body(row["body"], row["body_encoding"])
    if not body:
        return None
    try:
        return parse(body, row["content_type"])[1].buyer_phone
    except Exception:  # an odd body (held, unclassified): the next one may do
        return None


def phones(ledger: Ledger, cfg: Config, *, backfill: bool = False) -> dict:
    """What each candidate's stored postbacks give: ``phone`` (E.164) or ``issue``; with
    ``backfill``, written (and audited). Returns ``{"rows": [...], "found": n, "issues": n,
    "no_postback": n, "written": n}``."""
    from ..notify.phone import normalize

    subs = candidates(ledger, cfg)
    stored = _postbacks(ledger, subs)
    rows = []
    for sub in subs:
        phone, issue, source = None, None, None
        for inbox_id in stored.get(sub["id"], []):
            raw = _phone_of(ledger, inbox_id)
            if raw is None:
                continue
            found = normalize(raw, cfg.whatsapp.default_region)
            if issue is None or found.e164:  # the newest reason for none, unless an older one has a number
                phone, issue, source = found.e164, found.issue, inbox_id
            if found.e164:
                break
        rows.append({"subscription": sub["id"], "buyer_email": sub["buyer_email"], "product": sub["product_code"],
                     "phone": phone, "issue": None if phone else (issue or NO_POSTBACK), "inbox": source})
    written = _write(ledger, rows) if backfill else 0
    return {"rows": rows, "found": sum(1 for r in rows if r["phone"]),
            "issues": sum(1 for r in rows if r["inbox"] and not r["phone"]),
            "no_postback": sum(1 for r in rows if not r["inbox"]), "written": written}


def _write(ledger: Ledger, rows: list[dict]) -> int:
    written = 0
    with ledger.tx() as conn:
        for row in rows:
            if row["inbox"] is None:  # nothing read: the next postback decides
                continue
            changed = conn.execute("UPDATE subscriptions SET buyer_phone = :phone, phone_issue = :issue"
                                   " WHERE id = :id AND buyer_phone IS NULL AND phone_issue IS NULL",
                                   {"phone": row["phone"], "issue": row["issue"], "id": row["subscription"]}).rowcount
            if changed:
                written += 1
                ledger.audit("subscription.phone", subscription_id=row["subscription"], inbox_id=row["inbox"],
                             phone="…" + row["phone"][-4:] if row["phone"] else None, issue=row["issue"])
    return written


def set_phone(ledger: Ledger, cfg: Config, ref: str, raw: str | None) -> tuple[dict, int]:
    """``subs phone``: correct a subscription's WhatsApp number (``raw``, normalised as a
    postback's), or remove it (``raw`` None: email only, and no later postback brings it back).
    Its unsent WhatsApp messages follow: re-addressed to the new number, or skipped when the
    number is removed. Audited (``subscription.phone``, numbers masked to their last four
    digits). Returns the subscription and how many queued messages followed."""
    from .subs import find, whatsapp_number

    sub = find(ledger, ref)
    phone = whatsapp_number(cfg, sub["product_code"], raw, option="NUMBER") if raw is not None else None
    with ledger.tx() as conn:
        conn.execute("UPDATE subscriptions SET buyer_phone = :phone, phone_issue = :issue WHERE id = :id",
                     {"phone": phone, "issue": None if phone else PHONE_CLEARED, "id": sub["id"]})
        unsent = {"sub": sub["id"], "channel": WHATSAPP, "gone": MailStatus.SENT, "dropped": MailStatus.SKIPPED}
        where = " WHERE subscription_id = :sub AND channel = :channel AND status NOT IN (:gone, :dropped)"
        if phone:
            moved = conn.execute("UPDATE outbox SET to_addr = :phone" + where, {**unsent, "phone": phone}).rowcount
        else:
            moved = conn.execute("UPDATE outbox SET status = :dropped, last_error = :why" + where,
                                 {**unsent, "why": PHONE_CLEARED}).rowcount
        ledger.audit("subscription.phone", subscription_id=sub["id"], buyer_email=sub["buyer_email"],
                     phone=_mask(phone), previous=_mask(sub["buyer_phone"]), issue=None if phone else PHONE_CLEARED,
                     messages=moved or None)
    return find(ledger, str(sub["id"])), moved


def _mask(e164: str | None) -> str | None:
    return "…" + e164[-4:] if e164 else None
