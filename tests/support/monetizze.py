"""A fake Monetizze API 2.1 on loopback: ``/token`` and ``/transactions``.

Shaped after what third-party clients describe (Monetizze's own docs are not public):

* ``GET /2.1/token`` with header ``X_CONSUMER_KEY`` → ``{"token", "user_id", "expire"}``; a
  wrong or missing key → HTTP 403 with issue #18's reply ``{"status": 403, "Time", "Error":
  "Credenciais de API não fornecidas - ", "Information"}``.
* ``GET /2.1/transactions`` with header ``TOKEN`` → ``{"status": 200, "dados": [...],
  "recordCount": "N", "pages": N, "error": ""}`` (``recordCount`` a string, ``pages`` ≥ 1).
  Filters: ``date_min``/``date_max`` on ``venda.dataInicio``, ``end_date_min``/
  ``end_date_max`` on ``venda.dataFinalizada`` (an unpaid ``0000-00-00 00:00:00`` never
  matches), ``status[]`` (the sale's status code), ``transaction``, ``product``, ``email``;
  ``page`` from 1. Dates must be ``yyyy-mm-dd hh:mm:ss`` (anything else → 400). An expired
  or unknown token → 403 like ``/token``'s.

Knobs: ``.down`` (True → 503 HTML, "close" → connection closed unanswered), ``.nonjson``
(200 with an HTML page), ``.body_status`` (HTTP 200 with ``{"status": <it>, "Error": ...}``,
``.error_text`` as the Error); those three hit every request, or only those for which
``.trouble_when(path, query)`` is true. ``.token_uses`` (how many transactions requests a token
serves before it expires; None = forever), ``.errors_in_body_only`` (403s come as HTTP 200
with the status only in the body), ``.page_size``. State: ``.sales`` (API rows; see
``api_row``), ``.requests`` (``(path, query dict, raw query)`` in order), ``.tokens_issued``,
``.refused`` (403s answered).
"""

from __future__ import annotations

import copy
import json
import math
import secrets
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_KEYS = ("chave_unica", "produto", "venda", "plano", "assinatura", "comissoes", "comprador", "produtor")
STATUS_CODES = {"aguardando pagamento": 1, "finalizada": 2, "cancelada": 3, "devolvida": 4, "bloqueada": 5,
                "completa": 6}
FORBIDDEN = {"status": 403, "Time": "2026-11-25 13:24:43", "Error": "Credenciais de API não fornecidas - ",
             "Information": "Por favor acesse o endereço https://api.monetizze.com.br/2.1/apidoc"}
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def api_row(postback: dict, started: str | None = None) -> dict:
    """A transactions row for the sale a postback payload describes: the postback's blocks,
    without the event fields (``tipoEvento``, ``postback_evento``, ``codigo_status``...): the
    API tells a sale's *current* state through ``venda.status`` only."""
    row = {key: copy.deepcopy(postback[key]) for key in API_KEYS if key in postback}
    if started is not None:
        row["venda"]["dataInicio"] = started
    row["downloads"] = ""
    return row


class FakeMonetizze:
    def __init__(self, consumer_key: str = "ck-9f8e7d6c5b4a", page_size: int = 100):
        self.consumer_key = consumer_key
        self.page_size = page_size
        self.sales: list[dict] = []
        self.requests: list[tuple[str, dict, str]] = []
        self.down: bool | str = False
        self.nonjson = False
        self.body_status: int | None = None
        self.trouble_when = None  # (path, query dict) -> bool; None = every request
        self.error_text = "Erro interno"
        self.token_uses: int | None = None
        self.errors_in_body_only = False
        self.dados_as_object = False
        self.tokens_issued = 0
        self.refused = 0
        self._tokens: dict[str, int] = {}  # token -> transactions requests served
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeMonetizze:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "use the fake as a context manager"
        return f"http://127.0.0.1:{self._server.server_address[1]}/2.1"

    def transaction_pages(self) -> list[int]:
        return [int(query.get("page", ["1"])[0]) for path, query, _ in self.requests if path.endswith("/transactions")]

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query, keep_blank_values=True)
        with self._lock:
            self.requests.append((url.path, query, url.query))
        if self.trouble_when is None or self.trouble_when(url.path, query):
            if self.down == "close":
                handler.close_connection = True
                return
            if self.down:
                return self._reply(handler, 503, "<html><body><h1>503 Service Unavailable</h1></body></html>")
            if self.nonjson:
                return self._reply(handler, 200, "<html><body>Manutenção programada</body></html>")
            if self.body_status is not None:
                return self._reply(handler, 200, {"status": self.body_status, "Error": self.error_text})
        if url.path == "/2.1/token":
            return self._token(handler)
        if url.path == "/2.1/transactions":
            return self._transactions(handler, query)
        self._reply(handler, 404, {"status": 404, "Error": "Not found"})

    def _token(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("X_CONSUMER_KEY") != self.consumer_key:
            return self._forbidden(handler)
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = 0
            self.tokens_issued += 1
        self._reply(handler, 200, {"token": token, "user_id": "4242", "expire": "2026-11-25 23:59:59"})

    def _transactions(self, handler: BaseHTTPRequestHandler, query: dict) -> None:
        token = handler.headers.get("TOKEN", "")
        with self._lock:
            uses = self._tokens.get(token)
            if uses is None or (self.token_uses is not None and uses >= self.token_uses):
                expired = True
            else:
                expired = False
                self._tokens[token] = uses + 1
        if expired:
            return self._forbidden(handler)
        try:
            rows = [row for row in self.sales if self._matches(row, query)]
        except ValueError:
            return self._reply(handler, 400, {"status": 400, "Error": "Data inválida"})
        rows.sort(key=lambda row: str(row.get("venda", {}).get("codigo")))
        page = int(query.get("page", ["1"])[0] or 1)
        start = (page - 1) * self.page_size
        dados = rows[start:start + self.page_size]
        if self.dados_as_object:
            dados = {str(start + 3 * index): row for index, row in enumerate(dados)}
        self._reply(handler, 200, {"status": 200, "dados": dados,
                                   "recordCount": str(len(rows)),
                                   "pages": max(1, math.ceil(len(rows) / self.page_size)), "error": ""})

    @staticmethod
    def _matches(row: dict, query: dict) -> bool:
        sale = row.get("venda", {})
        for field, low, high in (("dataInicio", "date_min", "date_max"),
                                 ("dataFinalizada", "end_date_min", "end_date_max")):
            bounds = [query[name][0] for name in (low, high) if name in query]
            for bound in bounds:
                datetime.strptime(bound, DATE_FORMAT)  # ValueError → 400
            value = sale.get(field) or ""
            if bounds and value.startswith("0000"):
                return False
            if low in query and value < query[low][0] or high in query and value > query[high][0]:
                return False
        statuses = query.get("status[]")
        if statuses and str(STATUS_CODES.get(str(sale.get("status", "")).lower())) not in statuses:
            return False
        wanted = {"transaction": sale.get("codigo"), "product": row.get("produto", {}).get("codigo"),
                  "email": row.get("comprador", {}).get("email")}
        return all(query[name][0] == str(value) for name, value in wanted.items() if name in query)

    def _forbidden(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.refused += 1
        self._reply(handler, 200 if self.errors_in_body_only else 403, FORBIDDEN)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, code: int, payload: dict | str) -> None:
        is_json = not isinstance(payload, str)
        data = (json.dumps(payload) if is_json else payload).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json" if is_json else "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
