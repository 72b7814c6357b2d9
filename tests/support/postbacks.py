"""Build sample postbacks for engine tests and feed them to a ledger's inbox."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from iptvsync.ledger.inbox import inbox_row, store
from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.postback import parse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "monetizze"
EVENTS = {1: ("Aguardando pagamento", "1", "Aguardando pagamento"), 2: ("Finalizada / Aprovada", "2", "Finalizada"),
          3: ("Cancelada", "3", "Cancelada"), 4: ("Devolvida (Reembolso)", "4", "Devolvida"),
          5: ("Bloqueada", "5", "Bloqueada"), 6: ("Completa", "6", "Completa"),
          101: ("Assinatura - Ativa", "2", "Finalizada"), 102: ("Assinatura - Inadimplente", "3", "Cancelada"),
          103: ("Assinatura - Cancelada", "6", "Completa")}


def payload(event: int = 2, *, sale: str = "51000001", parcela: int | None = 1, subscription: str | None = "1104370",
            paid: str = "2026-11-20 14:37:57", product: str = "145388", email: str = "maria@example.com",
            periodicity: str | None = "Mensal") -> dict:
    """A postback payload (as Monetizze's json field holds it) for one event of one charge."""
    p = copy.deepcopy(json.loads((FIXTURES / "approved-first-charge.json").read_text("utf-8")))
    desc, status_code, status = EVENTS[event]
    p["tipoEvento"] = {"codigo": event, "descricao": desc}
    p["postback_evento"] = str(event)
    p["codigo_venda"] = sale
    p["codigo_status"] = status_code
    p["venda"].update(codigo=sale, status=status, dataFinalizada=paid if event != 1 else "0000-00-00 00:00:00")
    p["produto"]["codigo"] = product
    p["comprador"]["email"] = email
    if subscription is None:
        p.pop("assinatura")
        p["plano"].pop("periodicidade", None)
    else:
        p["assinatura"].update(codigo=subscription, parcela=str(parcela) if parcela is not None else "")
        if periodicity is None:
            p["plano"].pop("periodicidade", None)
    return p


def deliver(ledger, p: dict) -> int:
    """Store one postback in the inbox the way the receiver does; returns the inbox id."""
    body = build_form(p)
    _, pb = parse(body, "application/x-www-form-urlencoded")
    inbox_id, _dup = store(ledger, inbox_row(pb, body, content_type="application/x-www-form-urlencoded",
                                             remote_addr="127.0.0.1"))
    return inbox_id
