"""Keep secrets out of every log line, whoever writes it (urllib3 logs request paths at -v).

``install(cfg)`` puts a filter on the root logger's handlers that blanks, in each record's
message and traceback: the configured secrets, and the secret parts of each panel URL (an
XUI panel's URL carries its access code in the path; a URL may carry a key in its query or
a password before the host).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

MIN_SECRET = 4  # shorter path segments ("api", "v2") are not secrets, and blanking them would garble logs
#: Path segments that are names, not secrets: blanking them would garble every log line.
PLAIN_SEGMENTS = frozenset({"admin", "panel", "reseller", "xui", "api", "player_api", "iptv"})


def url_secrets(url: str) -> set[str]:
    """The parts of a panel URL that must never be logged: path segments, query values, password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url} if url else set()
    found = {segment for segment in parts.path.split("/")
             if len(segment) >= MIN_SECRET and "." not in segment and segment.lower() not in PLAIN_SEGMENTS}
    found |= {value for _key, value in parse_qsl(parts.query) if len(value) >= MIN_SECRET}
    if parts.password:
        found.add(parts.password)
    return found


class RedactSecrets(logging.Filter):
    def __init__(self, secrets):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to the handler to report
            return True
        record.msg, record.args = self.scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


def install(cfg) -> None:
    """Filter every handler of the root logger (once per handler) with this config's secrets."""
    s = cfg.secrets
    secrets = {s.chave_unica, s.consumer_key, s.smtp_password, *s.panel_api_keys.values(), *cfg.keyring,
               s.whatsapp_token, s.whatsapp_client_token}  # z-api's token is in its URL path
    for panel in cfg.panels.values():
        secrets |= url_secrets(panel.url)
    for handler in logging.getLogger().handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactSecrets)]
        handler.addFilter(RedactSecrets(secrets))
