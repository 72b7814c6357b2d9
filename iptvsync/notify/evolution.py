"""Evolution API (self-hosted, Baileys): ``POST {url}/message/sendText/{instance}`` with the
``apikey`` header and ``{"number", "text"}``; ``GET {url}/instance/connectionState/{instance}``.

Read at EvolutionAPI/evolution-api@3454bec (src/…):

* a sent message is answered ``201`` with the stored message, ``key.id`` its WhatsApp id
  (api/routes/sendMessage.router.ts:54-62);
* every error is ``{"status", "error", "response": {"message"}}`` with that HTTP status
  (main.ts:110-116); a missing or wrong ``apikey`` is 401 (api/guards/auth.guard.ts:15-17,50),
  an unknown instance 404 (api/guards/instance.guard.ts:35-37);
* a number not on WhatsApp is 400 whose message is the lookup, ``[{"exists": false, "jid",
  "number"}]`` (whatsapp.baileys.service.ts:2135-2139, exceptions/400.exception.ts:8);
* a disconnected instance fails that lookup before anything is sent, outside the send's
  ``try``: Baileys' "Connection Closed" reaches main.ts's handler without a status, so 500
  (whatsapp.baileys.service.ts:2135; main.ts:110): not sent, not ambiguous;
* any other failure inside the send is caught and re-thrown as 400 with the error's text
  (whatsapp.baileys.service.ts:2393-2396), and that block also stores the message after
  sending it: such a 400 may follow a delivered message, so it is ambiguous;
* the connection state is ``{"instance": {"instanceName", "state"}}``, state ``open``,
  ``connecting`` or ``close`` (api/controllers/instance.controller.ts:361-368);
* Brazilian numbers: the number is looked up with and without the ninth digit
  (whatsapp.baileys.service.ts:3435-3445; utils/createJid.ts:17-33), so the 13-digit form is
  sent as it is.
"""

from __future__ import annotations

from urllib.parse import quote

from iptvsync.errors import NotifyError
from iptvsync.notify._http import GatewayHttp, Reply, message_of
from iptvsync.notify.base import Caps, Health, Outgoing, Receipt
from iptvsync.notify.phone import digits_only


class EvolutionGateway:
    caps = Caps(needs=("url", "instance"), secrets=("WHATSAPP_TOKEN",))

    def __init__(self, *, url: str, instance: str, token: str, timeout_s: float = 15, **_):
        self.label = f"evolution {instance!r}"
        self.url = url.rstrip("/")
        self.instance = quote(instance, safe="")
        self.http = GatewayHttp(self.label, timeout_s, secrets=[token])
        self.headers = {"apikey": token}

    def send(self, message: Outgoing) -> Receipt:
        reply = self.http.call("POST", f"{self.url}/message/sendText/{self.instance}", what="sendText",
                               json_body={"number": digits_only(message.to), "text": message.text},
                               headers=self.headers)
        raise_for_response(self.http, reply)
        key = reply.body.get("key") if isinstance(reply.body, dict) else None
        if not isinstance(key, dict) or not key.get("id"):
            raise self.http.error(f"sendText answered {reply.status} without a message key", ambiguous=True)
        return Receipt(str(key["id"]), f"{reply.status} {reply.body.get('status', '')}".strip())

    def health(self) -> Health:
        try:
            reply = self.http.call("GET", f"{self.url}/instance/connectionState/{self.instance}",
                                   headers=self.headers, what="connectionState")
            raise_for_response(self.http, reply)
        except NotifyError as exc:
            return Health(reachable="unreachable" not in str(exc), authorized=not exc.permanent,
                          connected=False, detail=str(exc))
        state = (reply.body.get("instance") or {}).get("state") if isinstance(reply.body, dict) else None
        return Health(True, True, state == "open", f"state {state or 'unknown'}")


def raise_for_response(http: GatewayHttp, reply: Reply) -> None:
    """Nothing for a 2xx; otherwise the ``NotifyError`` that says what may be assumed."""
    status, body = reply.status, reply.body
    if 200 <= status < 300:
        return
    message = (body.get("response") or {}).get("message") if isinstance(body, dict) else None
    text = message_of(message if message is not None else body)
    if status == 400 and isinstance(message, list) and any(
            isinstance(m, dict) and m.get("exists") is False for m in message):
        raise http.error("the number is not on WhatsApp", permanent=True)
    if status == 400 and message == ["Text is required"]:
        raise http.error("400 Text is required", permanent=True)
    if status == 400:
        raise http.error(f"400 {text} (the send failed midway: it may have been delivered)", ambiguous=True)
    if status in (401, 403):
        raise http.error(f"{status} apikey refused: check WHATSAPP_TOKEN", permanent=True, gateway_wide=True)
    if status == 404:
        raise http.error(f"404 {text}: check [whatsapp] instance", permanent=True, gateway_wide=True)
    if status == 429:
        raise http.error(f"429 rate limited: {text}", rate_limited=True)
    if status >= 500 and "Connection Closed" in text:
        raise http.error("the instance is not connected to WhatsApp (Connection Closed): pair it again"
                         " in Evolution's manager", disconnected=True)
    raise http.error(f"{status} {text}", ambiguous=status >= 500, permanent=400 <= status < 500)
