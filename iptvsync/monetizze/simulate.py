"""Realistic postbacks for go-live checks: built from a shipped template, sent to a receiver.

Every simulated sale gets a fresh sale code (prefix ``SIM``), so it never collides with a
real one, and is posted exactly like Monetizze does: form-encoded with the ``json`` field.
"""

from __future__ import annotations

import copy
import json
import secrets
from importlib import resources

from ..clock import SAO_PAULO, now
from .form import build_form
from .marks import SIMULATED_SALE_PREFIX

EVENTS = {
    "purchase": (2, "Finalizada / Aprovada", "2", "Finalizada", "Ativa"),
    "renewal": (2, "Finalizada / Aprovada", "2", "Finalizada", "Ativa"),
    "refund": (4, "Devolvida (Reembolso)", "4", "Devolvida", "Ativa"),
    "dispute": (5, "Bloqueada", "5", "Bloqueada", "Ativa"),
    "cancel": (103, "Assinatura - Cancelada", "6", "Completa", "Cancelada"),
}


def build_postback(kind: str, *, chave_unica: str, product: str, email: str, name: str = "Cliente Teste",
                   sale: str | None = None, subscription: str | None = None, parcela: int = 1) -> tuple[dict, bytes]:
    """The payload and its form body for one simulated event."""
    event, desc, status_code, status, sub_status = EVENTS[kind]
    payload = json.loads(resources.files("iptvsync").joinpath("data/postback-template.json").read_text("utf-8"))
    payload = copy.deepcopy(payload)
    sale = sale or f"{SIMULATED_SALE_PREFIX}{secrets.randbelow(10**8):08d}"
    stamp = now().astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")
    payload["chave_unica"] = chave_unica
    payload["produto"]["codigo"] = product
    payload["comprador"].update(email=email, nome=name)
    payload["tipoEvento"] = {"codigo": event, "descricao": desc}
    payload["postback_evento"] = str(event)
    payload["codigo_venda"] = sale
    payload["codigo_status"] = status_code
    payload["venda"].update(codigo=sale, status=status, dataInicio=stamp, dataFinalizada=stamp)
    subscription = subscription or f"{SIMULATED_SALE_PREFIX}{secrets.randbelow(10**7):07d}"
    payload["assinatura"].update(codigo=subscription, status=sub_status, parcela=str(parcela), data_assinatura=stamp)
    payload["json"] = "{...}"
    return payload, build_form(payload)
