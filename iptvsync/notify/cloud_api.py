"""WhatsApp Cloud API (Meta): ``POST {url}/{phone-number-id}/messages`` with a bearer token.

Outside the 24-hour window after a buyer's own message, Meta delivers only approved
templates, and a shop writes first: every message is a template (``caps.templates_only``),
named per kind in ``[whatsapp.cloud_templates]``, language ``pt_BR``, its body variables in
order (docs/whatsapp.md has the texts to submit).

Sources:

* the request ``{"messaging_product": "whatsapp", "to", "type": "template", "template": {"name",
  "language": {"code"}, "components": [{"type": "body", "parameters": [{"type": "text",
  "text"}]}]}}`` and the answer ``{"messaging_product", "contacts": [{"input", "wa_id"}],
  "messages": [{"id": "wamid…"}]}`` (developers.facebook.com/docs/whatsapp/cloud-api/guides/
  send-message-templates);
* errors are ``{"error": {"message", "type", "code", "error_data": {"messaging_product",
  "details"}, "error_subcode", "fbtrace_id"}}``; judge by ``code`` (developers.facebook.com/
  documentation/business-messaging/whatsapp/support/error-codes, "Error response syntax");
* codes and HTTP statuses (that page, and docs.ycloud.com/en/api-reference/guides/
  whatsapp-platform/handle-whatsapp-errors): 190 token expired (401); 0, 3, 10, 200-299
  authorization and permission; 4, 80007, 130429 rate limits (429: throughput reached),
  131056 pair rate limit (too many to one number); 131026 undeliverable (not on WhatsApp);
  131047 re-engagement (outside the 24-hour window: no template was used); 132000-132015
  template problems (missing, paused, wrong parameter count); 1, 2, 131000, 131016 service
  errors (500/503); 100 invalid parameter;
* the phone number's own record, ``GET {url}/{phone-number-id}`` (fields ``verified_name``,
  ``display_phone_number``, ``quality_rating``), answers with the same token: the health check.
"""

from __future__ import annotations

from urllib.parse import quote

from iptvsync.errors import NotifyError
from iptvsync.notify._http import GatewayHttp, Reply, message_of
from iptvsync.notify.base import Caps, Health, Outgoing, Receipt
from iptvsync.notify.phone import digits_only

DEFAULT_URL = "https://graph.facebook.com/v21.0"
AUTH_CODES = {0, 3, 10, 190} | set(range(200, 300))
RATE_CODES = {4, 80007, 130429}
SERVICE_CODES = {1, 2, 131000, 131016}


class CloudApiGateway:
    caps = Caps(templates_only=True, needs=("phone_number_id",), secrets=("WHATSAPP_TOKEN",), has_session=False)

    def __init__(self, *, url: str, phone_number_id: str, token: str, timeout_s: float = 15, **_):
        self.label = f"cloud-api number {phone_number_id!r}"
        self.root = f"{(url or DEFAULT_URL).rstrip('/')}/{quote(phone_number_id, safe='')}"
        self.http = GatewayHttp(self.label, timeout_s, secrets=[token])
        self.headers = {"Authorization": f"Bearer {token}"}

    def send(self, message: Outgoing) -> Receipt:
        if not message.template:
            raise self.http.error(f"no template name for {message.kind!r} in [whatsapp.cloud_templates]",
                                  permanent=True)
        template = {"name": message.template, "language": {"code": message.language}}
        if message.params:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": value} for value in message.params]}]
        reply = self.http.call("POST", f"{self.root}/messages", what="messages", headers=self.headers,
                               json_body={"messaging_product": "whatsapp", "recipient_type": "individual",
                                          "to": digits_only(message.to), "type": "template", "template": template})
        raise_for_response(self.http, reply)
        body = reply.body if isinstance(reply.body, dict) else {}
        messages = body.get("messages") or [{}]
        if not isinstance(messages, list) or not isinstance(messages[0], dict) or not messages[0].get("id"):
            raise self.http.error(f"messages answered {reply.status} without a message id", ambiguous=True)
        contacts = body.get("contacts") or [{}]
        wa_id = contacts[0].get("wa_id", "") if isinstance(contacts[0], dict) else ""
        return Receipt(str(messages[0]["id"]), f"wa_id {wa_id}" if wa_id else "")

    def health(self) -> Health:
        try:
            reply = self.http.call("GET", f"{self.root}?fields=verified_name,display_phone_number,quality_rating",
                                   headers=self.headers, what="phone number")
            raise_for_response(self.http, reply)
        except NotifyError as exc:
            return Health(reachable="unreachable" not in str(exc), authorized=not exc.permanent,
                          connected=False, detail=str(exc))
        body = reply.body if isinstance(reply.body, dict) else {}
        return Health(True, True, True, f"{body.get('display_phone_number', '?')} ({body.get('verified_name', '?')},"
                                        f" quality {body.get('quality_rating', '?')})")


def raise_for_response(http: GatewayHttp, reply: Reply) -> None:
    status, body = reply.status, reply.body
    if 200 <= status < 300:
        return
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        raise http.error(f"{status} {message_of(body)}", ambiguous=status >= 500, rate_limited=status == 429,
                         permanent=400 <= status < 500 and status != 429)
    code = error.get("code")
    details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
    text = f"{status} (#{code}) {message_of(error.get('message', ''))}"
    text += f": {message_of(details)}" if details else ""
    if code in AUTH_CODES:
        raise http.error(f"{text}: check WHATSAPP_TOKEN and its permissions", permanent=True, gateway_wide=True)
    if code in RATE_CODES:
        raise http.error(text, rate_limited=True)
    if code == 131056:
        raise http.error(text)  # this buyer's number only: later, the others go on
    if code in SERVICE_CODES:
        raise http.error(text, ambiguous=True)
    if code == 133010:
        raise http.error(f"{text}: register the number in WhatsApp Manager", permanent=True, gateway_wide=True)
    raise http.error(text, permanent=400 <= status < 500, ambiguous=status >= 500)
