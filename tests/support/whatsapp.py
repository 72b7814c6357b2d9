"""Fake WhatsApp gateways: real HTTP servers on loopback answering as Evolution API, Z-API and
Meta's Cloud API do, with the quirks their sources document (each cited where it is coded).

Knobs (all fakes): ``.latency_s`` (before answering), ``.connected`` (the WhatsApp session),
``.not_on_whatsapp`` (numbers, digits only, that have no account), ``.fail_next(n, mode)``
with mode "timeout_after_send" (the message is delivered, the answer held ``.stall_s``),
"close_after_send" (delivered, the connection closed unanswered), "500" and "429" (nothing
delivered), ``.sent`` (delivered messages: dicts with ``to`` and ``text`` or ``template`` and
``params``), ``.requests`` (every request: method, path, headers, JSON body).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("timeout_after_send", "close_after_send", "500", "429")


def br_jid(digits: str) -> str:
    """Evolution's createJid for a Brazilian 13-digit number: the ninth digit is dropped for
    area codes 31 and up when the subscriber number starts with 7, 8 or 9 (EvolutionAPI/
    evolution-api@3454bec src/utils/createJid.ts:17-33), as WhatsApp registered those."""
    if len(digits) == 13 and digits.startswith("55"):
        ddd, rest = int(digits[2:4]), digits[5:]
        if not (int(rest[0]) < 7 or ddd < 31):
            return f"{digits[:4]}{rest}@s.whatsapp.net"
    return f"{digits}@s.whatsapp.net"


class FakeGateway:
    def __init__(self) -> None:
        self.latency_s = 0.0
        self.stall_s = 5.0
        self.connected = True
        self.not_on_whatsapp: set[str] = set()
        self.sent: list[dict] = []
        self.requests: list[dict] = []
        self._failures: list[list] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # -- knobs ---------------------------------------------------------------------------------
    def fail_next(self, n: int, mode: str) -> None:
        assert mode in MODES, mode
        self._failures.append([n, mode])

    def _take_failure(self) -> str | None:
        with self._lock:
            if self._failures:
                self._failures[0][0] -= 1
                mode = self._failures[0][1]
                if self._failures[0][0] <= 0:
                    self._failures.pop(0)
                return mode
        return None

    # -- server --------------------------------------------------------------------------------
    def start(self) -> FakeGateway:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = {"method": method, "path": h.path, "headers": dict(h.headers), "body": body}
        with self._lock:
            self.requests.append(request)
        if self.latency_s:
            time.sleep(self.latency_s)
        status, answer, delivered = self.route(method, h.path, request)
        mode = self._take_failure() if delivered is not None else None
        if mode in ("500", "429"):
            status, answer, delivered = self.failure_answer(mode)
        if delivered is not None:
            with self._lock:
                self.sent.append(delivered)
        if mode == "timeout_after_send":
            time.sleep(self.stall_s)
        if mode == "close_after_send":
            h.close_connection = True
            h.connection.close()
            return
        data = json.dumps(answer).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass

    def next_id(self) -> str:
        return f"3EB0{next(self._ids):016X}"

    # each fake: route(method, path, request) -> (status, json answer, delivered message or None)
    def route(self, method: str, path: str, request: dict):
        raise NotImplementedError

    def failure_answer(self, mode: str):
        raise NotImplementedError


class FakeEvolution(FakeGateway):
    """Evolution API v2 (EvolutionAPI/evolution-api@3454bec, src/…)."""

    def __init__(self, instance: str = "loja", apikey: str = "evo-k3y") -> None:
        super().__init__()
        self.instance, self.apikey = instance, apikey

    @staticmethod
    def error(status: int, error: str, message):
        # every error: {"status", "error", "response": {"message"}} (main.ts:110-116)
        return status, {"status": status, "error": error, "response": {"message": message}}, None

    def route(self, method, path, request):
        parts = path.split("?")[0].strip("/").split("/")
        if request["headers"].get("apikey") != self.apikey:  # api/guards/auth.guard.ts:15-17, 50
            return self.error(401, "Unauthorized", "Unauthorized")
        if len(parts) != 3:
            return self.error(404, "Not Found", "Cannot find the route")
        if parts[2] != self.instance:  # api/guards/instance.guard.ts:35-37
            return self.error(404, "Not Found", [f'The "{parts[2]}" instance does not exist'])
        if method == "GET" and parts[:2] == ["instance", "connectionState"]:
            # api/controllers/instance.controller.ts:361-368
            state = "open" if self.connected else "close"
            return 200, {"instance": {"instanceName": self.instance, "state": state}}, None
        if method == "POST" and parts[:2] == ["message", "sendText"]:
            return self.send_text(request["body"] or {})
        return self.error(404, "Not Found", "Cannot find the route")

    def send_text(self, body: dict):
        number, text = str(body.get("number", "")), body.get("text")
        if not text or not str(text).strip():  # whatsapp.baileys.service.ts textMessage
            return self.error(400, "Bad Request", ["Text is required"])
        if not self.connected:
            # the lookup before the send's try fails, without a status: 500 (baileys.service.ts:2135; main.ts:110)
            return self.error(500, "Internal Server Error", "Connection Closed")
        digits = "".join(ch for ch in number if ch.isdigit())
        jid = br_jid(digits)
        if digits in self.not_on_whatsapp:  # baileys.service.ts:2135-2139, exceptions/400.exception.ts:8
            return self.error(400, "Bad Request", [{"jid": jid, "exists": False, "number": number}])
        key = {"remoteJid": jid, "fromMe": True, "id": self.next_id()}
        # 201 with the stored message (api/routes/sendMessage.router.ts:54-62)
        return 201, {"key": key, "pushName": "", "status": "PENDING", "message": {"conversation": text},
                     "messageType": "conversation", "messageTimestamp": int(time.time()),
                     "instanceId": "00000000-0000-4000-8000-000000000000", "source": "unknown"}, \
            {"to": number, "jid": jid, "text": text, "id": key["id"]}

    def failure_answer(self, mode):
        if mode == "429":  # Evolution has no limiter of its own; a proxy in front answers so
            return self.error(429, "Too Many Requests", "Too Many Requests")
        # any other unexpected error: 500 through main.ts:110-116
        return self.error(500, "Internal Server Error", "Internal Server Error")


class FakeZapi(FakeGateway):
    """Z-API (developer.z-api.io)."""

    def __init__(self, instance: str = "3EAAFE5FE9E5C1E3", token: str = "zt0ken", client_token: str = "ct0ken"):
        super().__init__()
        self.instance, self.token, self.client_token = instance, token, client_token

    def route(self, method, path, request):
        parts = path.split("?")[0].strip("/").split("/")
        if len(parts) != 5 or parts[0] != "instances" or parts[2] != "token":
            return 404, {"error": "NOT_FOUND"}, None
        if request["headers"].get("Client-Token") != self.client_token:
            # quoted by users: mmcriativos/imunify-platform COMO_OBTER_CLIENT_TOKEN.md
            return 400, {"error": "your client-token is not configured"}, None
        if parts[1] != self.instance or parts[3] != self.token:
            return 400, {"error": "Instance not found"}, None
        if method == "GET" and parts[4] == "status":  # /en/instance/status
            return 200, {"connected": self.connected, "error": "" if self.connected else "You are not connected.",
                         "smartphoneConnected": self.connected}, None
        if method == "POST" and parts[4] == "send-text":
            if "application/json" not in request["headers"].get("Content-Type", ""):
                return 415, {"error": "Unsupported Media Type"}, None  # every page, "415"
            body = request["body"] or {}
            message_id = self.next_id()
            # 200 {"zaapId", "messageId", "id"} (/en/message/send-message-text)
            return 200, {"zaapId": f"Z{message_id}", "messageId": message_id, "id": message_id}, \
                {"to": body.get("phone"), "text": body.get("message"), "id": message_id}
        return 405, {"error": "Method Not Allowed"}, None  # every page, "405"

    def failure_answer(self, mode):
        return (429, {"error": "Too Many Requests"}, None) if mode == "429" else (500, {"error": "Internal"}, None)


class FakeCloudApi(FakeGateway):
    """Meta's WhatsApp Cloud API (developers.facebook.com: send-message-templates, error-codes)."""

    def __init__(self, phone_number_id: str = "106540352242922", token: str = "EAAG-cloud",
                 templates: dict[str, int] | None = None) -> None:
        super().__init__()
        self.phone_number_id, self.token = phone_number_id, token
        #: approved templates: name -> number of body variables
        self.templates = templates if templates is not None else {}

    @staticmethod
    def error(status: int, code: int, message: str, details: str = ""):
        # {"error": {"message", "type", "code", "error_data", "fbtrace_id"}} (error-codes, syntax)
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
        if details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        return status, {"error": error}, None

    def route(self, method, path, request):
        parts = path.split("?")[0].strip("/").split("/")
        if request["headers"].get("Authorization") != f"Bearer {self.token}":
            return self.error(401, 190, "Error validating access token: Session has expired")  # code 190
        if parts[0] != self.phone_number_id:
            return self.error(400, 100, "Unsupported post request. Object does not exist")
        if method == "GET" and len(parts) == 1:
            return 200, {"verified_name": "Loja IPTV", "display_phone_number": "+55 11 3000-0000",
                         "quality_rating": "GREEN", "id": self.phone_number_id}, None
        if method == "POST" and parts[1:] == ["messages"]:
            return self.messages(request["body"] or {})
        return self.error(400, 100, "Unsupported request")

    def messages(self, body: dict):
        if body.get("type") != "template":  # outside the 24-hour window only templates (code 131047)
            return self.error(400, 131047, "Re-engagement message", "More than 24 hours have passed")
        template = body.get("template") or {}
        name = template.get("name")
        if name not in self.templates:
            return self.error(404, 132001, "Template name does not exist in the translation",
                              f"template name ({name}) does not exist in pt_BR")
        params = [p.get("text") for c in template.get("components", []) if c.get("type") == "body"
                  for p in c.get("parameters", [])]
        if len(params) != self.templates[name]:
            return self.error(400, 132000, "Number of parameters does not match the expected number of params")
        if any(not p or "\n" in p or "\t" in p or "     " in p for p in params):
            return self.error(400, 132018, "There was an issue with the parameters in your template")
        to = body.get("to", "")
        message_id = f"wamid.HBgN{self.next_id()}"
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                     "messages": [{"id": message_id}]}, \
            {"to": to, "template": name, "language": template.get("language", {}).get("code"), "params": params,
             "id": message_id}

    def failure_answer(self, mode):
        if mode == "429":  # 130429 throughput reached: 429 (docs.ycloud.com handle-whatsapp-errors)
            return self.error(429, 130429, "Rate limit hit", "Cloud API message throughput has been reached.")
        return self.error(500, 131000, "Something went wrong")  # 131000: 500
