"""Z-API (hosted): ``POST {url}/instances/{instance}/token/{token}/send-text`` with the account's
``Client-Token`` header and ``{"phone", "message"}``; ``GET …/status`` for the session.

Sources (developer.z-api.io):

* send-text answers ``200 {"zaapId", "messageId", "id"}`` (/en/message/send-message-text and
  /en/message/reply-message, "Response 200"); ``phone`` is digits only, country code first
  ("DDI DDD NUMERO", no mask);
* ``/status`` answers ``{"connected", "error", "smartphoneConnected"}``, ``error`` one of "You
  are already connected.", "You need to restore the session.", "You are not connected."
  (/en/instance/status);
* 405 for a wrong method, 415 without ``Content-Type: application/json`` (every endpoint's
  page, "405" and "415");
* a missing or unknown Client-Token is ``400 {"error": "your client-token is not configured"}``
  (not on the reference pages; quoted by users: github.com/mmcriativos/imunify-platform
  COMO_OBTER_CLIENT_TOKEN.md, github.com/YladaLead/YLADA docs/CORRIGIR-TOKEN-Z-API.md).

The instance token travels in the URL path: every message built here is scrubbed of it.
"""

from __future__ import annotations

from urllib.parse import quote

from iptvsync.errors import NotifyError
from iptvsync.notify._http import GatewayHttp, Reply, message_of
from iptvsync.notify.base import Caps, Health, Outgoing, Receipt
from iptvsync.notify.phone import digits_only

DEFAULT_URL = "https://api.z-api.io"


class ZapiGateway:
    caps = Caps(needs=("instance",), secrets=("WHATSAPP_TOKEN", "WHATSAPP_CLIENT_TOKEN"))

    def __init__(self, *, url: str, instance: str, token: str, client_token: str = "", timeout_s: float = 15,
                 **_):
        self.label = f"z-api instance {instance[:6]}…" if len(instance) > 8 else f"z-api instance {instance!r}"
        base = (url or DEFAULT_URL).rstrip("/")
        self.root = f"{base}/instances/{quote(instance, safe='')}/token/{quote(token, safe='')}"
        self.http = GatewayHttp(self.label, timeout_s, secrets=[token, client_token])
        self.headers = {"Client-Token": client_token} if client_token else {}

    def send(self, message: Outgoing) -> Receipt:
        reply = self.http.call("POST", f"{self.root}/send-text", what="send-text", headers=self.headers,
                               json_body={"phone": digits_only(message.to), "message": message.text})
        raise_for_response(self.http, reply)
        body = reply.body if isinstance(reply.body, dict) else {}
        message_id = body.get("messageId") or body.get("id") or body.get("zaapId")
        if not message_id:
            raise self.http.error(f"send-text answered {reply.status} without a message id", ambiguous=True)
        return Receipt(str(message_id), f"zaapId {body.get('zaapId', '')}".strip())

    def health(self) -> Health:
        try:
            reply = self.http.call("GET", f"{self.root}/status", headers=self.headers, what="status")
            raise_for_response(self.http, reply)
        except NotifyError as exc:
            return Health(reachable="unreachable" not in str(exc), authorized=not exc.permanent, connected=False,
                          detail=str(exc))
        body = reply.body if isinstance(reply.body, dict) else {}
        connected = body.get("connected") is True
        detail = "connected" if connected else (body.get("error") or "not connected")
        if connected and body.get("smartphoneConnected") is False:
            detail = "connected, but the phone is offline"
        return Health(True, True, connected, detail)


def raise_for_response(http: GatewayHttp, reply: Reply) -> None:
    status, body = reply.status, reply.body
    if 200 <= status < 300 and not (isinstance(body, dict) and body.get("error")):
        return
    error = body.get("error") if isinstance(body, dict) else None
    text = message_of(error or body)
    if error and "client-token" in str(error).lower():
        raise http.error(f"{status} {text}: check WHATSAPP_CLIENT_TOKEN (the account's security token)",
                         permanent=True, gateway_wide=True)
    if error and "not connected" in str(error).lower():
        raise http.error(f"{status} {text}: connect the instance (QR code) in Z-API's panel", disconnected=True)
    if status in (401, 403, 404):
        raise http.error(f"{status} {text}: check [whatsapp] instance and WHATSAPP_TOKEN", permanent=True,
                         gateway_wide=True)
    if status in (405, 415):
        raise http.error(f"{status} {text}", permanent=True, gateway_wide=True)
    if status == 429:
        raise http.error(f"429 rate limited: {text}", rate_limited=True)
    raise http.error(f"{status} {text}", ambiguous=status >= 500 or 200 <= status < 300,
                     permanent=400 <= status < 500)
