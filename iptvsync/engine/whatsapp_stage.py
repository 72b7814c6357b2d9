"""Stage 4b of ``process``: the outbox's WhatsApp rows, through the configured gateway.

Guarantees, and the one rule about an unknown outcome (docs/whatsapp.md):

* a row is marked in flight (``sending_at``, committed) before its request leaves, and
  settled with the outcome after; once the gateway acknowledged it (``sent``, its id in
  ``message_id``) it is never sent again;
* a send whose outcome is unknown (the request left and no clear answer came: a read timeout,
  a dropped connection, an ambiguous 5xx, or a ``process`` killed between sending and
  recording, found as a row still in flight) counts in ``unknowns``; it is sent again only
  while ``unknowns <= [whatsapp] unknown_resends`` (default 0: never), after the backoff; past
  that it is ``failed`` with the reason, for an operator to check the buyer's chat and use
  ``subs retry``. These gateways take no idempotency key, and an activation carries the
  password;
* any other failure backs off across runs (``queue.fail``) and is dead after
  ``[policy] max_attempts``; a refusal for good (a number not on WhatsApp) fails at once;
* a failure of the gateway itself (unreachable, credentials refused, session disconnected,
  rate limited) ends this run's WhatsApp sends after that one row: the others wait, uncharged;
* an outage (any ``NotifyError``) is logged as a warning: it delays messages, ``status``
  reports it, and the run still succeeds; any other exception is a bug, logged as an error,
  which makes the run a failure (``engine/runner.Failures``);
* sends are paced per gateway: at most ``per_minute``, with a random pause up to
  ``jitter_ms`` between two (bursts get numbers banned). The email stage runs before this
  one: a gateway that is down never delays an email.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime

from ..clock import iso
from ..config import Config
from ..errors import NotifyError
from ..ledger.db import Ledger
from ..ledger.outbox import WHATSAPP, note_gateway
from ..ledger.queue import OUTBOX, MailStatus, SyncStatus, done, due, fail
from ..notify.base import Outgoing
from ..notify.registry import build_gateway

log = logging.getLogger("iptvsync.whatsapp")
#: monotonic time of the last send, per gateway, for the pacing across the runs of one process
_LAST_SEND: dict[str, float] = {}


def make_gateway(cfg: Config):
    w = cfg.whatsapp
    return build_gateway(w.gateway, url=w.url, instance=w.instance, phone_number_id=w.phone_number_id,
                         token=cfg.secrets.whatsapp_token, client_token=cfg.secrets.whatsapp_client_token,
                         timeout_s=w.timeout_s)


def build_outgoing(cfg: Config, gateway, sub: dict, row: dict) -> Outgoing:
    """The message of one row: text for text gateways, template and variables for the others."""
    from ..mail.whatsapp import cloud_params, render_text
    from .mail_stage import email_context

    context = email_context(cfg, sub, row)
    w = cfg.whatsapp
    if gateway.caps.templates_only:
        return Outgoing(row["to_addr"], row["kind"], template=cfg.cloud_templates.get(row["kind"], ""),
                        language=w.template_language, params=cloud_params(row["kind"], context, w.language))
    text = render_text(row["kind"], context, w.language, w.templates_dir and cfg.resolve(w.templates_dir) or None)
    return Outgoing(row["to_addr"], row["kind"], text=text)


class Pacer:
    """At most ``per_minute`` sends a minute, a random pause up to ``jitter_ms`` added."""

    def __init__(self, key: str, per_minute: int, jitter_ms: int, sleep=time.sleep, clock=time.monotonic):
        self.key, self.interval, self.jitter = key, 60.0 / per_minute, jitter_ms / 1000
        self.sleep, self.clock = sleep, clock

    def wait(self, stop=None) -> bool:
        """Wait for this gateway's next slot; False if ``stop()`` said to give way meanwhile
        (a fresh payment is served first, not kept behind the pacing of bulk messages)."""
        last = _LAST_SEND.get(self.key)
        if last is not None:
            pause = max(0.0, last + self.interval - self.clock()) + random.uniform(0, self.jitter)
            if stop is None:
                self.sleep(pause) if pause else None
            else:
                until = self.clock() + pause
                while (left := until - self.clock()) > 0:
                    if stop():
                        return False
                    self.sleep(min(0.05, left))
        _LAST_SEND[self.key] = self.clock()
        return True


def due_rows(ledger: Ledger, now: datetime, limit: int | None, only: list[int] | None = None) -> list[dict]:
    among = f" AND o.subscription_id IN ({', '.join(str(int(i)) for i in only)})" if only is not None else ""
    return ledger.query(
        "SELECT o.*, s.sync_status, s.desired_enabled, s.applied_enabled FROM outbox o"
        " JOIN subscriptions s ON s.id = o.subscription_id"
        f" WHERE {due(OUTBOX, 'o')} AND o.channel = '{WHATSAPP}'{among}"
        " ORDER BY o.id LIMIT :limit", {"now": iso(now), "limit": -1 if limit is None else limit})


def send_whatsapp(ledger: Ledger, cfg: Config, now: datetime, limit: int | None = None, gateway=None, *,
                  only: list[int] | None = None, stop=None, sleep=time.sleep,
                  budget_s: float | None = None) -> dict[str, int]:
    """Send the due WhatsApp rows (of the subscriptions in ``only``, when given). ``stop()``
    may end the round early (a fresh payment waits); so does ``budget_s`` of time, the pacing
    included: the rest goes out in the next run (``more``)."""
    counts = {MailStatus.SENT: 0, "waiting": 0, MailStatus.SKIPPED: 0, MailStatus.FAILED: 0, "halted": 0}
    if budget_s is not None:
        deadline, given = time.monotonic() + budget_s, stop

        def stop() -> bool:
            if time.monotonic() > deadline:
                counts["more"] = 1
                return True
            return given is not None and given()

    if not cfg.whatsapp.gateway or (only is not None and not only):
        return counts
    rows = due_rows(ledger, now, limit, only)
    if not rows:
        return counts
    gateway = gateway or make_gateway(cfg)
    pacer = Pacer(cfg.whatsapp.gateway, cfg.whatsapp.per_minute, cfg.whatsapp.jitter_ms, sleep=sleep)
    for row in rows:
        if stop is not None and stop():
            break
        if row["needs_sync"] and not row["desired_enabled"]:
            _settle(ledger, cfg, row, MailStatus.SKIPPED, "line is disabled: credentials not sent", None, now)
            counts[MailStatus.SKIPPED] += 1
            continue
        if row["needs_sync"] and not (row["sync_status"] == SyncStatus.SYNCED and row["applied_enabled"]):
            counts["waiting"] += 1  # credentials wait for the panel sync on every channel
            continue
        if row["sending_at"]:  # a run died between sending it and recording the outcome
            exc = NotifyError(f"process stopped while sending it (in flight since {row['sending_at']})",
                              ambiguous=True)
            if _failed(ledger, cfg, row, exc, now) == MailStatus.FAILED:
                counts[MailStatus.FAILED] += 1
                continue
            row = {**row, "unknowns": row["unknowns"] + 1, "attempts": row["attempts"] + 1}
        sub = ledger.one("SELECT * FROM subscriptions WHERE id = ?", (row["subscription_id"],))
        try:
            message = build_outgoing(cfg, gateway, sub, row)
        except Exception as exc:  # a broken template override fails this message only
            _failed(ledger, cfg, row, NotifyError(f"cannot render: {type(exc).__name__}: {exc}", permanent=True), now)
            counts[MailStatus.FAILED] += 1
            continue
        if not pacer.wait(stop):
            break
        with ledger.tx() as conn:
            conn.execute("UPDATE outbox SET sending_at = :now WHERE id = :id", {"now": iso(now), "id": row["id"]})
        started = time.monotonic()
        try:
            receipt = gateway.send(message)
        except NotifyError as exc:
            status = _failed(ledger, cfg, row, exc, now, seconds=time.monotonic() - started)
            counts[MailStatus.FAILED if status != MailStatus.PENDING else "waiting"] += 1
            if exc.gateway_wide:
                counts["halted"] = 1
                break
            continue
        except Exception as exc:  # a bug, not an outage: the run fails (ERROR), the outcome is unknown
            log.exception("whatsapp %s (%s): unexpected error while sending", row["id"], row["kind"])
            _failed(ledger, cfg, row, NotifyError(f"unexpected {type(exc).__name__} while sending: {exc}"[:300],
                                                  ambiguous=True), now, seconds=time.monotonic() - started)
            counts[MailStatus.FAILED] += 1
            counts["halted"] = 1  # the same bug would meet every row: the rest wait for a fix
            break
        _settle(ledger, cfg, row, MailStatus.SENT, None, receipt.message_id, now,
                seconds=time.monotonic() - started)
        counts[MailStatus.SENT] += 1
    return counts


def _settle(ledger: Ledger, cfg: Config, row: dict, status: str, reason: str | None, message_id: str | None,
            now: datetime, seconds: float | None = None) -> None:
    with ledger.tx() as conn:
        done(conn, OUTBOX, row["id"], status, reason, sending_at=None, message_id=message_id,
             sent_at=iso(now) if status == MailStatus.SENT else None)
        if status == MailStatus.SENT:
            note_gateway(conn, cfg.whatsapp.gateway, now, ack=True)
        ledger.audit(f"whatsapp.{status}", actor="process", subscription_id=row["subscription_id"],
                     kind=row["kind"], cycle=row["cycle"], reason=reason, message_id=message_id,
                     seconds=round(seconds, 3) if seconds is not None else None)


def _failed(ledger: Ledger, cfg: Config, row: dict, exc: NotifyError, now: datetime,
            seconds: float | None = None) -> str:
    """Record one failed send; the row's new status."""
    attempts = row["attempts"] + 1
    unknowns = row["unknowns"] + (1 if exc.ambiguous else 0)
    # a refusal of this message for good fails it now; the gateway's own (bad token) backs off
    final = MailStatus.FAILED if exc.permanent and not exc.gateway_wide else None
    error = str(exc)
    if exc.ambiguous and unknowns > cfg.whatsapp.unknown_resends:
        final = MailStatus.FAILED
        error = (f"outcome unknown, not sent again ({error}); check the buyer's WhatsApp, then"
                 f" `iptvsync subs retry {row['subscription_id']}` if nothing arrived")
    with ledger.tx() as conn:
        status = fail(conn, OUTBOX, row["id"], attempts=attempts, error=error, now=now,
                      max_attempts=cfg.policy.max_attempts, final=final)
        conn.execute("UPDATE outbox SET sending_at = NULL, unknowns = :u WHERE id = :id",
                     {"u": unknowns, "id": row["id"]})
        if not exc.permanent or exc.gateway_wide:
            note_gateway(conn, cfg.whatsapp.gateway, now, failure=str(exc), disconnected=exc.disconnected)
        ledger.audit("whatsapp.failed", actor="process", subscription_id=row["subscription_id"], kind=row["kind"],
                     attempts=attempts, status=status, error=error[:300], ambiguous=exc.ambiguous or None,
                     seconds=round(seconds, 3) if seconds is not None else None)
    log.warning("whatsapp %s (%s) to subscription %s: %s (%s)", row["id"], row["kind"], row["subscription_id"],
                exc, status)
    return status
