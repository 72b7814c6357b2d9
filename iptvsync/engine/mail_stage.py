"""Stage 4 of ``process``: send the outbox.

Credentials go out only once the line is verified in sync and enabled. The Message-ID is
derived from the outbox row and stored before the SMTP transaction; the row is marked sent
only after the server accepted it. A crash between "accepted" and "marked" sends the same
message (same Message-ID) again on the next run: at-least-once, and recognisably so.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from email.utils import parseaddr

from ..clock import iso
from ..config import Config
from ..errors import ConfigError, MailError
from ..ledger.db import Ledger
from ..ledger.outbox import EMAIL
from ..ledger.queue import OUTBOX, MailStatus, SyncStatus, done, due, fail

log = logging.getLogger("iptvsync.mail")


def make_backend(cfg: Config):
    from ..mail.backends import MaildirBackend, SmtpBackend

    e = cfg.email
    if e.backend == "smtp":
        if not e.smtp_host:
            raise ConfigError(f"{cfg.path}: missing required key 'smtp_host' in [email] (backend = smtp)")
        context = None
        if e.smtp_cafile:
            import ssl

            try:
                context = ssl.create_default_context(cafile=str(cfg.resolve(e.smtp_cafile)))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{cfg.path}: [email] smtp_cafile {e.smtp_cafile}: cannot be read as PEM"
                                  f" certificates ({exc.strerror or exc})") from None
        return SmtpBackend(e.smtp_host, e.smtp_port, e.smtp_security, cfg.secrets.smtp_username or None,
                           cfg.secrets.smtp_password or None, timeout_s=e.timeout_s, ssl_context=context)
    return MaildirBackend(cfg.resolve(e.maildir))


def email_context(cfg: Config, sub: dict, row: dict) -> dict:
    """Everything a template may use, from the ledger as it is now plus what was frozen at queue time."""
    from ..credentials import decrypt

    cfg.require("IPTVSYNC_SECRET_KEY")
    password = decrypt(sub["password_enc"], cfg.keyring) if sub["password_enc"] else ""
    panel = cfg.panels.get(sub["panel"])
    fill = {"username": sub["username"] or "", "password": password}
    server = panel.links.server if panel else ""
    fill["server"] = server
    frozen = json.loads(row["context"] or "{}")
    product = cfg.products.get(sub["product_code"])
    expires = frozen.get("access_until") or sub["paid_until"] or row["created_at"]
    return {
        "buyer_name": sub["buyer_name"] or "", "buyer_email": sub["buyer_email"],
        "product_name": (product.name if product and product.name else sub["product_name"]) or "IPTV",
        "support": cfg.email.support, "username": fill["username"], "password": password,
        "server": server, "m3u": panel.links.m3u.format(**fill) if panel else "",
        "epg": panel.links.epg.format(**fill) if panel else "",
        "expires_at": expires, "recurring": bool(sub["recurring"]),
        **{k: v for k, v in frozen.items() if k != "access_until"},
    }


def due_rows(ledger: Ledger, now: datetime, limit: int | None, only: list[int] | None = None) -> list[dict]:
    among = f" AND o.subscription_id IN ({', '.join(str(int(i)) for i in only)})" if only is not None else ""
    return ledger.query(
        "SELECT o.*, s.sync_status, s.desired_enabled, s.applied_enabled FROM outbox o"
        " JOIN subscriptions s ON s.id = o.subscription_id"
        f" WHERE {due(OUTBOX, 'o')} AND o.channel = '{EMAIL}'{among}"
        " ORDER BY o.id LIMIT :limit", {"now": iso(now), "limit": -1 if limit is None else limit})


def send_outbox(ledger: Ledger, cfg: Config, now: datetime, limit: int | None = None,
                backend=None, *, only: list[int] | None = None, stop=None) -> dict[str, int]:
    """Send what is due (of the subscriptions in ``only``, when given); before each email,
    ``stop()`` may end the round early (fresher work waits)."""
    counts = {MailStatus.SENT: 0, "waiting": 0, MailStatus.SKIPPED: 0, MailStatus.FAILED: 0}
    if only is not None and not only:
        return counts
    rows = due_rows(ledger, now, limit, only)
    if not rows:
        return counts
    # jinja2, email and cryptography: only for the runs that have mail to send
    from ..mail.message import build_message, make_message_id
    from ..mail.render import render

    backend = backend or make_backend(cfg)
    from_addr = cfg.email.from_addr
    domain = parseaddr(from_addr)[1].rpartition("@")[2] or "iptvsync.local"
    try:
        make_message_id(domain, "probe")
    except ValueError:  # an odd [email] from must not stop every email
        domain = "iptvsync.local"
    assign_message_ids(ledger, rows, domain, cfg.require("IPTVSYNC_SECRET_KEY"))
    for row in rows:
        if stop is not None and stop():
            break
        if row["needs_sync"] and not row["desired_enabled"]:
            _finish(ledger, row, MailStatus.SKIPPED, "line is disabled: credentials not sent", now)
            counts[MailStatus.SKIPPED] += 1
            continue
        if row["needs_sync"] and not (row["sync_status"] == SyncStatus.SYNCED and row["applied_enabled"]):
            counts["waiting"] += 1  # the line is not verified yet; try again next run
            continue
        sub = ledger.one("SELECT * FROM subscriptions WHERE id = ?", (row["subscription_id"],))
        message_id = row["message_id"]
        try:
            rendered = render(row["kind"], email_context(cfg, sub, row), cfg.email.language,
                              cfg.email.templates_dir and cfg.resolve(cfg.email.templates_dir) or None)
            msg = build_message(rendered, to_addr=row["to_addr"], to_name=sub["buyer_name"], from_addr=from_addr,
                                message_id=message_id, reply_to=cfg.email.reply_to or None)
            backend.send(msg)
        except MailError as exc:
            _failed(ledger, cfg, row, exc, now)
            counts[MailStatus.FAILED] += 1
            continue
        except Exception as exc:  # a broken template override fails this email only, never the others
            # ... but it fails the run: `process` exits 1 and `status` says why. A key that opens no
            # password (ConfigError) is fixed in .env, then the email goes: it is not given up on.
            log.error("outbox %s (%s) for subscription %s could not be rendered: %s: %s", row["id"], row["kind"],
                      row["subscription_id"], type(exc).__name__, exc)
            _failed(ledger, cfg, row, MailError(f"{type(exc).__name__}: {exc}",
                                                permanent=not isinstance(exc, ConfigError)), now)
            counts[MailStatus.FAILED] += 1
            continue
        _finish(ledger, row, MailStatus.SENT, None, now)
        counts[MailStatus.SENT] += 1
    return counts


def assign_message_ids(ledger: Ledger, rows: list[dict], domain: str, install_secret: str) -> None:
    """Give each row its Message-ID before anything is sent, all in one transaction, so a
    resend after a crash carries the same one. The install's secret and the row's creation
    time go into the hash: a second install (or a fresh ledger) never reuses an ID that a
    buyer's mail client has already seen, which would hide the new message as a duplicate."""
    from ..mail.message import make_message_id

    missing = [row for row in rows if not row["message_id"]]
    if not missing:
        return
    with ledger.tx() as conn:
        for row in missing:
            row["message_id"] = make_message_id(
                domain, f"{install_secret}:{row['id']}:{row['kind']}:{row['cycle']}:{row['created_at']}")
            conn.execute("UPDATE outbox SET message_id = :m WHERE id = :id AND message_id IS NULL",
                         {"m": row["message_id"], "id": row["id"]})


def _finish(ledger: Ledger, row: dict, status: str, reason: str | None, now: datetime) -> None:
    with ledger.tx() as conn:
        done(conn, OUTBOX, row["id"], status, reason, sent_at=iso(now) if status == MailStatus.SENT else None)
        ledger.audit(f"email.{status}", actor="process", subscription_id=row["subscription_id"],
                     buyer_email=row["to_addr"], kind=row["kind"], cycle=row["cycle"], reason=reason,
                     message_id=row["message_id"])


def _failed(ledger: Ledger, cfg: Config, row: dict, exc: MailError, now: datetime) -> None:
    attempts = row["attempts"] + 1
    with ledger.tx() as conn:
        status = fail(conn, OUTBOX, row["id"], attempts=attempts, error=str(exc), now=now,
                      max_attempts=cfg.policy.max_attempts, final=MailStatus.FAILED if exc.permanent else None)
        ledger.audit("email.failed", actor="process", subscription_id=row["subscription_id"],
                     buyer_email=row["to_addr"], kind=row["kind"], attempts=attempts, status=status,
                     error=str(exc)[:300])
    log.warning("email %s (%s) to subscription %s: %s (%s)", row["id"], row["kind"], row["subscription_id"],
                exc, status)
