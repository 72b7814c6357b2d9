"""The HTTP leg shared by the panel adapters, and the decoding of the line rows they return.

Every panel call is one form POST through ``PanelHttp.post``. It sends with (connect, read)
timeouts, decodes the JSON reply, and turns whatever went wrong on the way into a
``PanelError`` whose flags tell the engine what it may assume:

* the request certainly never left (connection refused, connect timeout, TLS handshake):
  retried here a few times, then ``transient`` and not ``ambiguous``;
* it may have reached the server (read timeout, dropped connection, 5xx, a body that is not
  a JSON object): ``transient`` and ``ambiguous``: the engine re-reads before anything else.

Secrets (API key, line passwords) travel in the POST body, never in the URL, so they stay out
of access logs and out of the exception texts of requests/urllib3. Messages built here never
quote a reply body, because XUI echoes passwords in its error replies; ``redact`` scrubs the
rows kept in ``Line.raw``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from iptvsync.errors import PanelError
from iptvsync.panels.base import Line

if TYPE_CHECKING:
    import requests

# requests, urllib3 and tenacity (~90 ms to import) are imported where a call is made: reading
# the config imports each configured adapter for its ``caps``, and `status` must not pay them.

#: Reply keys whose values are never kept or shown (XUI rows carry the line password,
#: ``user_info`` carries the API user's key).
SECRET_KEYS = frozenset({"password", "api_key", "api_pass", "access_token", "play_token", "token"})
#: access_output ids -> the stream extension players ask for (XC_VM player_api getOutputFormats;
#: Xtream Codes 2.9 database.sql ``access_output`` rows 1-3)
OUTPUT_FORMATS = {1: "m3u8", 2: "ts", 3: "rtmp"}
OUTPUT_IDS = {name: number for number, name in OUTPUT_FORMATS.items()}
CONNECT_TIMEOUT_CAP_S = 10.0
CONNECT_ATTEMPTS = 3
USER_AGENT = "iptvsync"


class PanelHttp:
    """One panel endpoint: a requests.Session, its timeouts and the secrets to keep out of text."""

    def __init__(self, label: str, url: str, timeout_s: float, secrets: Iterable[str] = (),
                 pool_size: int = 4):
        import requests

        self.label = label  # e.g. "xui-admin panel 'main'", prefixed to every message
        self.url = url
        self.timeout = (min(timeout_s, CONNECT_TIMEOUT_CAP_S), timeout_s)
        self.secrets = [s for s in secrets if s]
        self.session = requests.Session()
        # Keep one connection per concurrent caller alive (requests keeps 10): with fewer, the
        # calls beyond the pool open a new connection, and a new TLS handshake, every time.
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        # Read the proxy environment once, not on every call (it was most of a call's CPU).
        self.session.proxies.update(requests.utils.get_environ_proxies(url))
        self.session.trust_env = False

    def error(self, text: str, *, status: str | None = None, transient: bool = False,
              ambiguous: bool = False, secrets: Iterable[str] = ()) -> PanelError:
        """A PanelError whose message names the panel and cannot carry a known secret."""
        message = scrub(f"{self.label}: {text}", [*self.secrets, *secrets])
        return PanelError(message, transient=transient, ambiguous=ambiguous,
                          status=scrub(status, [*self.secrets, *secrets]) if status else None)

    def post(self, what: str, fields: dict[str, Any], *, query: dict[str, str] | None = None,
             secrets: Iterable[str] = ()) -> dict:
        """POST ``fields``; the decoded JSON object, or PanelError. ``what`` names the call."""
        import requests

        try:
            response = self._send(fields, query)
        except requests.RequestException as exc:
            raise self._transport_error(what, exc, secrets) from None
        code = response.status_code
        if code >= 500 or code == 429:
            raise self.error(f"{what}: HTTP {code} from the panel", status=f"HTTP {code}",
                             transient=True, ambiguous=True, secrets=secrets)
        if 300 <= code < 400:
            # Following a redirect would turn the POST into a GET and drop the api key.
            location = response.headers.get("Location", "").split("?")[0]
            raise self.error(f"{what}: panel redirects to {location!r}; configure that URL",
                             status=f"HTTP {code}", secrets=secrets)
        if code >= 400:
            raise self.error(f"{what}: HTTP {code} (wrong URL/access code, or IP not allowed?)",
                             status=f"HTTP {code}", secrets=secrets)
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            kind = response.headers.get("Content-Type", "unknown type")
            raise self.error(f"{what}: reply is not a JSON object ({kind}, {len(response.content)} "
                             "bytes)", status="NON_JSON", transient=True, ambiguous=True,
                             secrets=secrets)
        return reply

    def _send(self, fields: dict[str, Any], query: dict[str, str] | None) -> requests.Response:
        # Only failures that certainly did not reach the server are retried here; anything
        # else may have written, so it goes back to the engine, which re-reads first.
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        for attempt in Retrying(retry=retry_if_exception(never_reached_server),
                                stop=stop_after_attempt(CONNECT_ATTEMPTS),
                                wait=wait_exponential(multiplier=0.05, max=0.5), reraise=True):
            with attempt:
                return self.session.post(self.url, params=query, data=fields,
                                         timeout=self.timeout, allow_redirects=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_error(self, what: str, exc: requests.RequestException,
                         secrets: Iterable[str]) -> PanelError:
        # str(exc) quotes the URL and urllib3 internals: name the exception class only.
        import requests

        name = type(exc).__name__
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                            requests.exceptions.InvalidSchema)):
            return self.error(f"{what}: invalid panel URL ({name})", status="BAD_URL")
        if never_reached_server(exc):
            return self.error(f"{what}: cannot connect ({name})", status="CONNECT",
                              transient=True, secrets=secrets)
        if isinstance(exc, requests.Timeout):
            return self.error(f"{what}: no reply within {self.timeout[1]} s; the request may "
                              "have been applied", status="TIMEOUT", transient=True,
                              ambiguous=True, secrets=secrets)
        return self.error(f"{what}: connection lost after sending ({name}); the request may "
                          "have been applied", status="CONNECTION_LOST", transient=True,
                          ambiguous=True, secrets=secrets)


def never_reached_server(exc: BaseException) -> bool:
    """True when the request provably was not sent: no TCP connection or no TLS session."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        return isinstance(reason, (NewConnectionError, ConnectTimeoutError))
    return False


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact(value: Any) -> Any:
    """A deep copy of a reply with every secret-named key's value replaced by ``"***"``."""
    if isinstance(value, dict):
        return {key: "***" if key in SECRET_KEYS and item not in (None, "") else redact(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def as_int(value: Any) -> int | None:
    """Panels send numbers as ints, strings ("1767225600") or null; None for null/empty."""
    if isinstance(value, bool):
        return int(value)
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def as_bool(value: Any, default: bool = False) -> bool:
    number = as_int(value)
    return default if number is None else number != 0


def as_int_list(value: Any) -> list[int]:
    """A list of ids from a list, a JSON text such as "[1,2,3]", or nothing."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return [number for number in (as_int(item) for item in value) if number is not None]


def line_from_row(row: dict) -> Line:
    """A Line from an XUI ``lines`` row or an XC ``user_info`` (same column names).

    Bouquets come back sorted: XUI stores them in bouquet display order, so the engine should
    compare them as a set. ``bouquets`` is None when the row does not carry them.
    """
    line_id = row.get("id")
    return Line(
        line_id=None if line_id in (None, "") else str(line_id),
        username=str(row.get("username") or ""),
        password=str(row.get("password") or ""),
        expires_at=as_int(row.get("exp_date")),
        enabled=as_bool(row.get("enabled"), default=True),
        max_connections=as_int(row.get("max_connections")),
        bouquets=tuple(sorted(set(as_int_list(row["bouquet"])))) if "bouquet" in row else None,
        is_trial=as_bool(row.get("is_trial")),
        banned=not as_bool(row.get("admin_enabled"), default=True),
        outputs=(tuple(sorted(OUTPUT_FORMATS.get(i, str(i)) for i in set(as_int_list(row["allowed_outputs"]))))
                 if "allowed_outputs" in row else None),
        raw=redact(row),
    )
