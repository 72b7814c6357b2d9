"""The WhatsApp gateways by name: the one place that names them and builds one from plain values.

Everything else asks a gateway's ``caps`` (``base.Caps``), never its name. Gateways are
imported on first use, so reading the config does not import an HTTP client.
"""

from __future__ import annotations

from importlib import import_module

from iptvsync.notify.base import Caps, Gateway

#: ``[whatsapp] gateway`` -> "module:class"
GATEWAYS = {
    "evolution": "iptvsync.notify.evolution:EvolutionGateway",
    "z-api": "iptvsync.notify.zapi:ZapiGateway",
    "cloud-api": "iptvsync.notify.cloud_api:CloudApiGateway",
}
NAMES = tuple(GATEWAYS)


def gateway_class(name: str) -> type:
    if name not in GATEWAYS:
        raise ValueError(f"unknown gateway {name!r} (one of {', '.join(NAMES)})")
    module, cls = GATEWAYS[name].split(":")
    return getattr(import_module(module), cls)


def capabilities(name: str) -> Caps:
    return gateway_class(name).caps


def build_gateway(name: str, *, url: str = "", instance: str = "", phone_number_id: str = "", token: str = "",
                  client_token: str = "", timeout_s: float = 15) -> Gateway:
    return gateway_class(name)(url=url, instance=instance, phone_number_id=phone_number_id, token=token,
                               client_token=client_token, timeout_s=timeout_s)
