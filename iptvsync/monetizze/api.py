"""Monetizze's API 2.1 as iptvsync reads it: ``GET /token``, then ``GET /transactions`` page by page.

What third parties say about the API but Monetizze does not confirm, and the defence here:
the reply envelope (``status``/``dados``/``pages``/``recordCount``) is checked and anything
else is an error; the token lifetime is unknown, so a fresh token is taken per run and one
403 gets one new token; a page count that does not add up is reported by the caller.
Secrets (the consumer key, tokens) never reach a message.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

import requests

from ..clock import SAO_PAULO
from ..errors import MonetizzeApiError

JSON = "application/json"
TIMEOUT_S = (10.0, 30.0)  # (connect, read)
MAX_PAGES = 200  # per window; 100 rows a page (UNCONFIRMED) makes 20,000 sales
#: Query parameters of the two windows: when the sale was created, and when it was paid.
#: A boleto issued before ``--since`` and paid after it is only in the second one.
WINDOWS = {"created": ("date_min", "date_max"), "finalized": ("end_date_min", "end_date_max")}


class MonetizzeApi:
    """``GET /token`` then ``GET /transactions`` page by page; secrets never reach a message."""

    def __init__(self, api_url: str, consumer_key: str, timeout_s: tuple[float, float] = TIMEOUT_S):
        self.url = api_url.rstrip("/")
        self.host = urlsplit(self.url).netloc or self.url
        self.timeout = timeout_s
        self._key = consumer_key
        self._token: str | None = None
        self._secrets = [consumer_key]
        self.tokens_issued = 0
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "iptvsync"

    def new_token(self) -> str:
        body = self._get("token", {}, {"X_CONSUMER_KEY": self._key}, status_required=False)
        if body is None:
            raise self._error("/token: the consumer key was refused (403); check MONETIZZE_CONSUMER_KEY "
                              "(Ferramentas -> API)")
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise self._error("/token: the reply has no token")
        self.tokens_issued += 1
        self._token = token.strip()
        self._secrets.append(self._token)
        return self._token

    def transactions(self, params: dict) -> tuple[list[dict], int, int | None]:
        """Every row of one query: (rows, pages read, recordCount as the API reported it)."""
        rows, page = [], 1
        while True:
            body = self._page({**params, "page": page})
            dados = body.get("dados")
            if isinstance(dados, dict):  # PHP's json_encode of an array whose keys have gaps
                dados = list(dados.values())
            if dados is not None and not isinstance(dados, list):
                raise self._error(f"/transactions page {page}: 'dados' is not a list")
            rows += [row for row in dados or [] if isinstance(row, dict)]
            pages = _count(body.get("pages"))
            if page >= (1 if pages is None else pages):
                return rows, page, _count(body.get("recordCount"))
            if page >= MAX_PAGES:
                raise self._error(f"/transactions: more than {MAX_PAGES} pages; use a shorter --since")
            page += 1

    def _page(self, params: dict) -> dict:
        # The token's lifetime is not documented (third parties say 15 minutes idle): on a
        # 403, one new token and one more try; a second 403 is an error.
        for _ in range(2):
            body = self._get("transactions", params, {"TOKEN": self._token or self.new_token()})
            if body is not None:
                return body
            self._token = None
        raise self._error("/transactions: a fresh token was refused too (403); check the API key's permissions")

    def _get(self, path: str, params: dict, headers: dict, *, status_required: bool = True) -> dict | None:
        """The JSON object of a good reply; None for a 403 (HTTP or in the body)."""
        try:
            # No redirects: requests would resend the TOKEN/X_CONSUMER_KEY headers to any host.
            resp = self.session.get(f"{self.url}/{path}", params=params, headers=headers,
                                    timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise self._error(f"/{path}: no reply within {self.timeout[1]:g} s") from None
        except requests.RequestException as exc:  # str(exc) quotes URLs and internals: class only
            raise self._error(f"/{path}: cannot connect ({type(exc).__name__})") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        status = _count(body.get("status")) if body else None
        if resp.status_code == 403 or status == 403:
            return None
        if 300 <= resp.status_code < 400:
            location = resp.headers.get("Location", "").split("?")[0]
            raise self._error(f"/{path}: HTTP {resp.status_code} redirect to {location!r}; "
                              "set [monetizze] api_url to it")
        if resp.status_code != 200:
            raise self._error(f"/{path}: HTTP {resp.status_code}{self._detail(body)}")
        if body is None:
            kind = resp.headers.get("Content-Type", "no content type")
            raise self._error(f"/{path}: the reply is not a JSON object ({kind}, {len(resp.content)} bytes)")
        if status != 200 and (status_required or "status" in body):
            raise self._error(f"/{path}: status {body.get('status')!r} in the reply{self._detail(body)}")
        return body

    def _detail(self, body: dict | None) -> str:
        text = next((body[k] for k in ("Error", "error", "message") if body and body.get(k)), None)
        return f": {self._scrub(' '.join(str(text).split()))[:160]}" if text else ""

    def _error(self, text: str) -> MonetizzeApiError:
        return MonetizzeApiError(self._scrub(f"Monetizze API ({self.host}) {text}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _count(value) -> int | None:
    """An int from an int or a numeric string (``recordCount`` is a string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def api_time(moment: datetime) -> str:
    """The API's ``yyyy-mm-dd hh:mm:ss``, read as São Paulo time like every Monetizze date."""
    return moment.astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")



def fetch_sales(api: MonetizzeApi, since: datetime, until: datetime) -> tuple[list[dict], list[dict]]:
    """Rows created or finalized in the window (a sale may be in both), and what each window returned."""
    rows, windows = [], []
    for name, (low, high) in WINDOWS.items():
        found, pages, record_count = api.transactions({low: api_time(since), high: api_time(until)})
        windows.append({"by": name, "pages": pages, "record_count": record_count, "rows": len(found)})
        rows += found
    return rows, windows
