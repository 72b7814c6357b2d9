"""What operators ask about the WhatsApp channel: ``doctor``'s checks, ``status``'s facts and
problems, and ``notify test whatsapp NUMBER`` (one message, step by step, like ``mail test``)."""

from __future__ import annotations

import time
from typing import NamedTuple

from ..clock import now, parse_iso
from ..config import Config
from ..errors import NotifyError
from ..ledger.outbox import WHATSAPP
from ..ledger.queue import MailStatus

#: Meta's sample template every WhatsApp Business account has (en_US, no variables): what
#: ``notify test`` sends through the Cloud API, where free text cannot open a conversation
CLOUD_TEST_TEMPLATE = ("hello_world", "en_US")


def _row(check: str, status: str, detail: str) -> dict:
    return {"check": check, "status": status, "detail": detail}


def _gateway(cfg: Config):
    from ..engine.whatsapp_stage import make_gateway

    return make_gateway(cfg)


def check_whatsapp(cfg: Config) -> list[dict]:
    """``doctor``: the gateway reachable, its credentials accepted, its session connected."""
    if not cfg.whatsapp.gateway:
        return [_row("whatsapp", "ok", "off ([whatsapp] gateway is empty): buyers get email only")]
    if not any("whatsapp" in cfg.channels(code) for code in cfg.products):
        return [_row("whatsapp", "warn", f"{cfg.whatsapp.gateway} configured, but no channels list names whatsapp")]
    try:
        gateway = _gateway(cfg)
        health = gateway.health()
    except NotifyError as exc:
        return [_row("whatsapp gateway", "fail", str(exc))]
    label = cfg.whatsapp.gateway
    rows = [_row("whatsapp gateway", "ok" if health.reachable else "fail",
                 f"{label} reachable" if health.reachable else health.detail)]
    if health.reachable:
        rows.append(_row("whatsapp credentials", "ok" if health.authorized else "fail",
                         "accepted" if health.authorized else health.detail))
    if health.reachable and health.authorized:
        # a paired phone's session, or (Cloud API) the registered number
        rows.append(_row("whatsapp session" if gateway.caps.has_session else "whatsapp number",
                         "ok" if health.connected else "fail",
                         health.detail if health.connected else f"not connected: {health.detail}"))
    return rows


def whatsapp_status(conn, cfg: Config) -> tuple[dict, list[str]]:
    """``status``: WhatsApp's queue and the gateway as ``process`` last saw it (no network)."""
    one = lambda sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
    facts = {
        "whatsapp_pending": one("SELECT COUNT(*) FROM outbox WHERE channel = ? AND status = ?", WHATSAPP,
                                MailStatus.PENDING),
        "whatsapp_failed": one("SELECT COUNT(*) FROM outbox WHERE channel = ? AND status IN (?, ?)", WHATSAPP,
                               MailStatus.FAILED, MailStatus.DEAD),
        "subs_email_only_no_phone": one("SELECT COUNT(*) FROM subscriptions WHERE phone_issue IS NOT NULL"
                                        " AND paid_until IS NOT NULL"),
    }
    state = conn.execute("SELECT * FROM gateway_state WHERE id = 1").fetchone()
    facts["whatsapp_last_ack"] = state["last_ack_at"] if state else None
    problems = []
    if not cfg.whatsapp.gateway or state is None:
        return facts, problems
    last_ack, last_failure = parse_iso(state["last_ack_at"]), parse_iso(state["last_failure_at"])
    acked = f"last acknowledged send {state['last_ack_at']}" if last_ack else "no send acknowledged yet"
    if state["disconnected"]:
        problems.append(f"WhatsApp ({state['gateway']}) is disconnected since {state['last_failure_at']}: pair it"
                        f" again; messages wait meanwhile ({acked}): {state['last_failure']}")
    elif last_failure and (last_ack is None or last_failure > last_ack):
        problems.append(f"WhatsApp sends are failing ({acked}): {state['last_failure']}")
    return facts, problems


class Step(NamedTuple):
    name: str
    ok: bool
    detail: str


def send_test(cfg: Config, number: str) -> list[Step]:
    """One test message to ``number``, each step reported; the last one failed if any did."""
    from ..notify.base import Outgoing
    from ..notify.phone import normalize

    w = cfg.whatsapp
    if not w.gateway:
        return [Step("config", False, f"{cfg.path}: [whatsapp] gateway is empty")]
    steps = [Step("config", True, f"gateway {w.gateway}")]
    phone = normalize(number, w.default_region)
    if phone.e164 is None:
        return [*steps, Step("number", False, f"{number!r}: {phone.issue}")]
    steps.append(Step("number", True, phone.e164))
    try:
        gateway = _gateway(cfg)
        health = gateway.health()
    except NotifyError as exc:
        return [*steps, Step("health", False, str(exc))]
    if not (health.reachable and health.authorized and health.connected):
        return [*steps, Step("health", False, health.detail)]
    steps.append(Step("health", True, health.detail))
    if gateway.caps.templates_only:
        name, language = CLOUD_TEST_TEMPLATE
        message = Outgoing(phone.e164, "test", template=name, language=language)
    else:
        message = Outgoing(phone.e164, "test", text="Mensagem de teste do iptvsync: se você a recebeu, o envio"
                                                    " por WhatsApp funciona.")
    started = time.monotonic()
    try:
        receipt = gateway.send(message)
    except NotifyError as exc:
        _note(cfg, failure=str(exc), disconnected=exc.disconnected)
        return [*steps, Step("send", False, str(exc))]
    _note(cfg, ack=True)
    return [*steps, Step("send", True, f"acknowledged as {receipt.message_id} in {time.monotonic() - started:.2f} s")]


def _note(cfg: Config, **outcome) -> None:
    from ..ledger.db import Ledger
    from ..ledger.outbox import note_gateway

    ledger = Ledger(cfg.ledger_path)
    try:
        with ledger.tx() as conn:
            note_gateway(conn, cfg.whatsapp.gateway, now(), **outcome)
    finally:
        ledger.close()

