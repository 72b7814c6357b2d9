"""The inbox: every postback that passed authentication, stored whole (secret blanked) + parsed.

The body is kept byte for byte, deflated with a preset dictionary as it is stored (``ZDICT``:
a ~5 kB form becomes ~150 bytes); ``get`` and the apply stage inflate it. What the parser made
of a pending row's body waits beside it in ``inbox_facts`` until the row is settled: the apply
stage reads that instead of parsing the body a second time.

Rows are keyed by the postback's dedupe key; a duplicate bumps ``times_seen`` instead of
creating a second row, so redelivery never means a second effect.
"""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso, now
from ..errors import UsageError
from ..monetizze.postback import (
    IDENTITY_FIELDS,
    MAX_CODE_CHARS,
    NOT_PAYMENT,
    UNCLASSIFIED,
    Postback,
    facts_json,
    parse,
    unusable_identity,
)
from .db import Ledger
from .queue import INBOX, InboxStatus, not_in, requeue

INSERT = """
INSERT INTO inbox (received_at, source, remote_addr, content_type, body, body_encoding, dedupe_key, event, kind,
                   sale_code, subscription_code, parcela, product_code, plan_code, plan_ref,
                   buyer_email, paid_at, is_test, status, reason, last_seen_at)
VALUES (:received_at, :source, :remote_addr, :content_type, :body, :body_encoding, :dedupe_key, :event, :kind,
        :sale_code, :subscription_code, :parcela, :product_code, :plan_code, :plan_ref,
        :buyer_email, :paid_at, :is_test, :status, :reason, :received_at)
ON CONFLICT (dedupe_key) DO UPDATE SET times_seen = times_seen + 1, last_seen_at = excluded.last_seen_at
RETURNING id, times_seen
"""


def inbox_row(pb: Postback, body: bytes, *, content_type: str | None, remote_addr: str | None,
              source: str = "postback", at: datetime | None = None) -> dict[str, Any]:
    """The row to store for one postback. Test-button and non-payment events are stored
    already settled (``ignored``) with the reason, so nothing is dropped silently; one whose
    sale, buyer or product no real postback could have (``unusable_identity``) is stored
    ``held`` for an operator, its columns cut to ``MAX_CODE_CHARS``."""
    status, reason = InboxStatus.PENDING, None
    if pb.is_test:
        status, reason = InboxStatus.IGNORED, "Monetizze test postback"
    elif pb.kind == UNCLASSIFIED:
        status, reason = InboxStatus.IGNORED, "cannot classify: no event or status code"
    elif pb.kind == NOT_PAYMENT:
        status, reason = InboxStatus.IGNORED, f"event {pb.event} is not a subscription payment event"
    elif problems := unusable_identity(pb):
        status, reason = InboxStatus.HELD, (
            "not applied: " + "; ".join(problems) + ". Compare the body (`iptvsync inbox show`) with the"
            " sale in Monetizze, then `iptvsync inbox attach` it to its subscription, or leave it")
        # only the same body resent is a duplicate of it: two odd codes may read alike ("\ufffd")
        pb = replace(_clipped(pb), dedupe_key="held:" + hashlib.sha256(body).hexdigest())
    return {
        "received_at": iso(at or now()), "source": source, "remote_addr": remote_addr,
        "content_type": content_type, "body": body, "dedupe_key": pb.dedupe_key, "event": pb.event,
        "kind": pb.kind, "sale_code": pb.sale_code, "subscription_code": pb.subscription_code,
        "parcela": pb.parcela, "product_code": pb.product_code, "plan_code": pb.plan_code,
        "plan_ref": pb.plan_ref, "buyer_email": pb.buyer_email, "paid_at": pb.paid_at,
        "is_test": int(pb.is_test), "status": status, "reason": reason,
    }


def _clipped(pb: Postback) -> Postback:
    return replace(pb, **{name: getattr(pb, name)[:MAX_CODE_CHARS] for name in IDENTITY_FIELDS
                          if len(getattr(pb, name) or "") > MAX_CODE_CHARS})


#: what one row's values can raise (an unencodable text, an int too wide): that row's fault,
#: raised before SQLite runs the statement, so the transaction and the other rows are intact
ROW_ERRORS = (ValueError, TypeError, OverflowError, sqlite3.InterfaceError, sqlite3.IntegrityError,
              sqlite3.DataError)


class UnstorableRow(Exception):
    """Row ``index`` of a group cannot be stored even as bare evidence; the rest can."""

    def __init__(self, index: int, error: BaseException):
        super().__init__(f"this postback cannot be stored: {type(error).__name__}")
        self.index = index


def store_rows(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    """Insert-or-count each row inside the caller's transaction: [(id, duplicate)]. Rows not
    ``prepared`` yet are prepared here.

    A row whose parsed values cannot be stored is stored as evidence (``evidence_only``), so
    one odd postback never fails the others committed with it; one that cannot be stored even
    so raises ``UnstorableRow`` (nothing of the transaction is lost: the caller retries without it)."""
    out = []
    for index, row in enumerate(rows):
        if "facts" not in row:
            row = prepared(row)
        try:
            inbox_id, times_seen = conn.execute(INSERT, row).fetchone()
        except ROW_ERRORS as exc:
            try:
                row = evidence_only(row, exc)
                inbox_id, times_seen = conn.execute(INSERT, row).fetchone()
            except ROW_ERRORS as again:
                raise UnstorableRow(index, again) from None
        if times_seen == 1 and row["facts"]:  # a new row; a duplicate's first copy has its own
            conn.execute("INSERT INTO inbox_facts (inbox_id, facts) VALUES (?, ?)", (inbox_id, row["facts"]))
        out.append((inbox_id, times_seen > 1))
    return out


def evidence_only(row: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """``row`` (prepared) reduced to what cannot fail: its body and when and whence it came,
    ``held`` with the reason; only an identical body resent is a duplicate of it."""
    def text(value):
        return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else None

    return {**{key: None for key in row}, "received_at": text(row["received_at"]), "source": text(row["source"]),
            "remote_addr": text(row["remote_addr"]), "content_type": text(row["content_type"]),
            "body": row["body"], "body_encoding": row["body_encoding"], "kind": UNCLASSIFIED, "is_test": 0,
            "dedupe_key": "raw:" + hashlib.sha256(row["body"]).hexdigest(), "status": InboxStatus.HELD,
            "reason": f"stored as received only: what was read from it cannot be stored ({type(error).__name__})."
                      " See the body with `iptvsync inbox show`"}


def prepared(row: dict[str, Any]) -> dict[str, Any]:
    """The row as stored: its body compressed (``ZDICT``), and a pending row's ``facts`` (kept in
    ``inbox_facts`` until the row is settled).

    The receiver's writer process prepares its rows before it takes the write lock. So both
    jobs run on its one thread, off the request threads: there, zlib's two GIL releases per
    body cost ~20 % of the throughput at 64 connections (bench/receiver.py), for an ~18 µs
    job, and the parse (~70 µs) would hold the GIL."""
    facts = stored_facts(row["body"], row["content_type"]) if row["status"] == InboxStatus.PENDING else None
    return {**row, "body": compress_body(row["body"]), "body_encoding": ZDICT, "facts": facts}


def stored_facts(body: bytes, content_type: str | None) -> str | None:
    """What the apply stage will make of this stored body (``postback.facts_json``): parsed here,
    from the bytes as stored (secret blanked), so it is exactly what parsing them later gives.
    None when it does not parse: the apply stage parses it then, and says why it fails."""
    try:
        return facts_json(parse(body, content_type)[1])
    except Exception:
        return None


def store(ledger: Ledger, row: dict[str, Any]) -> tuple[int, bool]:
    with ledger.tx() as conn:
        return store_rows(conn, [row])[0]


LIST_COLUMNS = ("id, received_at, source, event, kind, sale_code, parcela, subscription_code, product_code,"
                " buyer_email, status, reason, times_seen, last_seen_at, attempts")


def list_inbox(ledger: Ledger, *, status: str | None = None, sale: str | None = None,
               email: str | None = None, since: datetime | None = None, limit: int = 50) -> list[dict]:
    where, params = ["1=1"], {"limit": limit}
    if status:
        where.append("status = :status")
        params["status"] = status
    if sale:
        where.append("sale_code = :sale")
        params["sale"] = sale
    if email:
        where.append("buyer_email = :email")
        params["email"] = email.strip().lower()
    if since:
        # the first row received at or after ``since`` by the inbox_received index, then the rowid range
        first = ledger.one("SELECT MIN(id) AS id FROM inbox INDEXED BY inbox_received WHERE received_at >= :since",
                           {"since": iso(since)})["id"]
        if first is None:
            return []
        where.append("id >= :first AND received_at >= :since")
        params.update(first=first, since=iso(since))
    return ledger.query(f"SELECT {LIST_COLUMNS} FROM inbox WHERE {' AND '.join(where)}"
                        " ORDER BY id DESC LIMIT :limit", params)


def get(ledger: Ledger, inbox_id: int) -> dict[str, Any] | None:
    """One row with its body as received (decompressed; empty once pruned)."""
    row = ledger.one("SELECT * FROM inbox WHERE id = :id", {"id": inbox_id})
    if row is not None:
        row["body"] = raw_body(row["body"], row.pop("body_encoding"))
    return row


# --- bodies: compressed as stored, dropped after the retention period -------------------------

ZDICT = "zlib-d1"  # body_encoding: zlib with the preset dictionary data/inbox-zdict-1.bin
PRUNED = "pruned"  # body_encoding: the body was dropped by ``inbox prune``; the parsed facts stay

#: The rows whose body is evidence only: their effect is in the ledger or there was none. Only
#: these are pruned, and only these are compressed by ``compress_settled`` in a ledger an older
#: version filled with raw bodies (a raw failed row is applied again as it is).
SETTLED = (InboxStatus.APPLIED, InboxStatus.IGNORED)

#: Rows compressed per transaction (and per ``process`` run, by ``compress_settled``).
COMPRESS_BATCH = 500


def _zdict() -> bytes:
    """The preset dictionary of ``zlib-d1``: a sample postback, as JSON and as a form. Postbacks
    share most of their bytes (keys, product, URLs), so a ~5 kB form compresses to a few hundred
    bytes with it instead of ~1.4 kB without. Never change this file: a new dictionary is a new
    encoding (``zlib-d2``), and rows keep the one they were written with."""
    global _ZDICT_BYTES
    if _ZDICT_BYTES is None:
        from importlib import resources

        _ZDICT_BYTES = resources.files("iptvsync").joinpath("data/inbox-zdict-1.bin").read_bytes()
    return _ZDICT_BYTES


_ZDICT_BYTES: bytes | None = None


def compress_body(body: bytes) -> bytes:
    # Done for every postback stored, so cheap first: level 3 and zlib's default
    # memLevel 8 deflate a 5 kB form to ~150 bytes in ~18 µs here; level 9 saves ~15 bytes for
    # ~30 µs, memLevel 9 costs ~110 µs (a hash table four times the size to set up). Inflating
    # does not depend on either.
    packer = zlib.compressobj(3, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, _zdict())
    return packer.compress(body) + packer.flush()


def raw_body(body: bytes | None, encoding: str | None) -> bytes:
    if encoding == ZDICT:
        unpacker = zlib.decompressobj(15, _zdict())
        return unpacker.decompress(body) + unpacker.flush()
    return b"" if encoding == PRUNED else (body or b"")


def compress_settled(ledger: Ledger, *, limit: int = 5000) -> int:
    """Compress the raw bodies of settled rows still stored as received; returns how many.

    Rows are compressed as they are stored now: this finds only the ones a ledger stored raw
    before, settled since. Done by ``process`` in short transactions: the receiver's writer
    waits at most for one."""
    done_count = 0
    while done_count < limit:
        with ledger.tx() as conn:
            rows = conn.execute(
                "SELECT id, body FROM inbox INDEXED BY inbox_raw WHERE body_encoding IS NULL"
                f" AND status IN ({', '.join('?' * len(SETTLED))}) ORDER BY id LIMIT ?",
                (*SETTLED, min(COMPRESS_BATCH, limit - done_count))).fetchall()
            for row in rows:
                conn.execute("UPDATE inbox SET body = :z, body_encoding = :enc WHERE id = :id",
                             {"z": compress_body(bytes(row["body"])), "enc": ZDICT, "id": row["id"]})
        done_count += len(rows)
        if len(rows) < COMPRESS_BATCH:
            break
    return done_count


def prune_bodies(ledger: Ledger, before: datetime, *, actor: str | None = None,
                 detail: dict[str, Any] | None = None) -> int:
    """Drop the raw body of settled rows received before ``before``; the parsed columns (sale,
    event, buyer, status …) and the audit trail stay. Returns how many were pruned."""
    with ledger.tx() as conn:
        count = conn.execute(
            "UPDATE inbox SET body = X'', body_encoding = :pruned WHERE received_at < :before"
            " AND body_encoding IS NOT :pruned"
            f" AND status IN ({', '.join(f':s{i}' for i in range(len(SETTLED)))})",
            {"pruned": PRUNED, "before": iso(before), **{f"s{i}": s for i, s in enumerate(SETTLED)}}).rowcount
        if count:
            ledger.audit("inbox.pruned", actor=actor, before=iso(before), count=count, **(detail or {}))
    return count


def retry(ledger: Ledger, ids: list[int] | None = None, *, action: str = "inbox.retry", actor: str | None = None,
          detail: dict[str, Any] | None = None) -> int:
    """Put failed/unmapped rows (or the given ids, unless pending) back in the queue now; how many.

    ``action`` names the audit row: ``inbox.retry``, or ``inbox.replay`` for applied rows
    applied again. An id with no row is a ``UsageError``.
    """
    with ledger.tx() as conn:
        if ids:
            marks = ", ".join(str(int(i)) for i in ids)
            found = {r[0] for r in conn.execute(f"SELECT id FROM inbox WHERE id IN ({marks})")}
            missing = [i for i in ids if i not in found]
            if missing:
                raise UsageError(f"no stored postback with id {', '.join(map(str, missing))}"
                                 " (see `iptvsync inbox list`)")
            # a pruned row has no body left to apply: it stays as it is
            count = requeue(conn, INBOX, ids=ids, where=not_in(INBOX, InboxStatus.PENDING)
                            + " AND body_encoding IS NOT :pruned", params={"pruned": PRUNED})
        else:
            count = requeue(conn, INBOX)
        if count:
            ledger.audit(action, actor=actor, ids=ids, count=count, **(detail or {}))
    return count


class AttachError(ValueError):
    """``inbox attach`` cannot do what was asked (unknown row or subscription, wrong status)."""


def attach(ledger: Ledger, inbox_id: int, subscription: str, actor: str = "operator",
           detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply a held postback to an existing subscription (by id or key) on the next ``process``.

    One transaction: the row remembers the subscription, goes back to pending, and the audit
    says who attached what to which."""
    with ledger.tx() as conn:
        row = conn.execute("SELECT id, status, sale_code, buyer_email, product_code FROM inbox WHERE id = :id",
                           {"id": inbox_id}).fetchone()
        if row is None:
            raise AttachError(f"no inbox row {inbox_id}")
        if row["status"] != InboxStatus.HELD:
            raise AttachError(f"inbox row {inbox_id} is {row['status']}, not {InboxStatus.HELD}")
        sub = conn.execute("SELECT id, key, product_code, buyer_email FROM subscriptions"
                           " WHERE key = :s OR CAST(id AS TEXT) = :s", {"s": str(subscription)}).fetchone()
        if sub is None:
            raise AttachError(f"no subscription {subscription}")
        if sub["product_code"] != row["product_code"]:
            raise AttachError(f"subscription {sub['id']} is product {sub['product_code']}, the postback is "
                              f"product {row['product_code']}")
        conn.execute("UPDATE inbox SET attached_to = :key WHERE id = :id", {"key": sub["key"], "id": inbox_id})
        requeue(conn, INBOX, ids=[inbox_id], statuses=[InboxStatus.HELD])
        ledger.audit("inbox.attached", actor=actor, inbox_id=inbox_id, subscription_id=sub["id"],
                     sale_code=row["sale_code"], buyer_email=row["buyer_email"], key=sub["key"], **(detail or {}))
    return {"inbox_id": inbox_id, "subscription_id": sub["id"], "key": sub["key"]}


def count_rejection(conn: sqlite3.Connection, status: int, reason: str, remote: str | None,
                    at: datetime | None = None, *, on_path: bool = False) -> None:
    """Count a rejected request: bounded by (day, status, reason), so floods can't fill the disk.

    ``on_path``: the request reached the (secret) postback path, so it came from someone who
    has the URL; those are also counted per hour for ``status`` (a spike of them means
    Monetizze's postbacks are being refused, or the URL leaked). Hours older than two days go.
    """
    at = at or now()
    if on_path:
        hour = at.strftime("%Y-%m-%dT%H")
        conn.execute(
            "INSERT INTO path_rejections (hour, status, reason, count) VALUES (:hour, :status, :reason, 1)"
            " ON CONFLICT (hour, status, reason) DO UPDATE SET count = count + 1",
            {"hour": hour, "status": status, "reason": reason})
        conn.execute("DELETE FROM path_rejections WHERE hour < :cutoff",
                     {"cutoff": (at - timedelta(days=2)).strftime("%Y-%m-%dT%H")})
    conn.execute(
        "INSERT INTO rejections (day, status, reason, count, last_at, last_remote)"
        " VALUES (:day, :status, :reason, 1, :at, :remote)"
        " ON CONFLICT (day, status, reason) DO UPDATE SET count = count + 1,"
        " last_at = excluded.last_at, last_remote = excluded.last_remote",
        {"day": at.strftime("%Y-%m-%d"), "status": status, "reason": reason, "at": iso(at),
         "remote": remote})


def touch_heartbeat(conn: sqlite3.Connection, pid: int, at: datetime | None = None) -> None:
    """The receiver's writer proves it can commit (``/healthz``): one row, rewritten."""
    conn.execute("INSERT INTO receiver_heartbeat (id, at, pid) VALUES (1, :at, :pid)"
                 " ON CONFLICT (id) DO UPDATE SET at = excluded.at, pid = excluded.pid",
                 {"at": iso(at or now()), "pid": pid})
