"""What ``status`` checks beyond the queues' counts: that the receiver answers, that Monetizze's
postbacks are not refused, and that no paid buyer has waited too long for line or email.

Each check returns a problem line (or nothing); ``health.health`` adds them to its own, and
``doctor`` shows the Monetizze key's verdict as a row.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from ..clock import iso, parse_iso
from ..config import Config
from ..ledger.outbox import NEEDS_SYNC
from ..ledger.queue import MailStatus
from ..monetizze.marks import KEY_REFUSED, SIMULATED_SALE_PREFIX
from ..timeparse import parse_duration

#: how long ``status`` waits for the receiver's /healthz
PROBE_TIMEOUT_S = 3.0
#: a refused Monetizze postback older than this no longer makes ``status`` fail by itself
REFUSAL_WINDOW = timedelta(days=7)
SHOWN = 5


def problems(cfg: Config, conn: sqlite3.Connection, t: datetime) -> list[str]:
    found = [probe_receiver(cfg), key_refused(conn, t), buyers_waiting(cfg, conn, t), emails_to_files(cfg)]
    return [p for p in found if p]


def receiver_url(cfg: Config) -> str:
    """``[status] receiver_url`` (e.g. the public https address, through the proxy), else the
    address ``serve`` listens on: a wildcard host is reached on loopback."""
    if cfg.status.receiver_url:
        return cfg.status.receiver_url.rstrip("/")
    r = cfg.receiver
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(r.host, r.host)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if r.certfile else 'http'}://{host}:{r.port}"


def probe_receiver(cfg: Config, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """GET /healthz of the configured receiver; a problem line unless it answers 200.

    One HTTP/1.0 request on a plain socket (``http.client`` would cost every ``status`` ~25 ms of
    imports). The certificate is not verified: this asks whether the receiver is up, on an
    address (loopback) its certificate does not name; ``doctor`` checks the certificate itself."""
    url = receiver_url(cfg)
    try:
        answer = _get(*_split(url), timeout_s)
    except (OSError, ValueError) as exc:
        why = "nothing listens there" if isinstance(exc, ConnectionRefusedError) else (
            f"no answer within {timeout_s:g}s" if isinstance(exc, TimeoutError) else type(exc).__name__)
        return (f"the receiver does not answer at {url}/healthz ({why}): postbacks are refused; is `serve`"
                " running? (systemctl status iptvsync-serve)")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split()
    status = status_line[1] if len(status_line) > 1 else "?"
    if status == "200":
        return None
    error = _receivers_error(body)
    if error is None:  # not the receiver's JSON: a proxy (or something else) answered
        return _not_the_receiver(url, status, _header(lines, "server"))
    said = f" ({error})" if error else ""
    if status == "503":
        return (f"the receiver at {url}/healthz answers HTTP 503{said}: postbacks are refused meanwhile;"
                " see journalctl -u iptvsync-serve")
    return (f"the receiver at {url}/healthz answers HTTP {status}{said}: is [status] receiver_url right? (empty"
            " = [receiver] host and port)")


def _receivers_error(body: bytes) -> str | None:
    """The ``error`` of the receiver's JSON answer ("" when it names none); None when the body is
    not the receiver's (a proxy's HTML page, an empty body)."""
    import json

    try:
        data = json.loads(body.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict) or not ({"error", "result"} & data.keys()):
        return None
    return " ".join(str(data.get("error") or "").split())[:120]


def _header(lines: list[str], name: str) -> str:
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return "".join(c for c in value.strip() if c.isprintable())[:40]
    return ""


def _not_the_receiver(url: str, status: str, server: str) -> str:
    """A non-200 answer that is not the receiver's: who answered, and what that usually means."""
    who = f"HTTP {status} from {server}" if server else f"HTTP {status}"
    if status == "403":
        why = ("a proxy refuses the probe (the shipped Caddy and nginx files answer /healthz to 127.0.0.1"
               " only): leave [status] receiver_url empty to probe the receiver itself")
    elif status in ("502", "503", "504"):
        why = ("a proxy cannot reach the receiver: is `serve` running? (systemctl status iptvsync-serve),"
               " then the proxy's error log")
    else:
        why = "something other than the receiver answers there: check [status] receiver_url and the proxy"
    return f"{url}/healthz answers {who}, not the receiver: {why}"


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path + /healthz) of an http(s) URL; urllib.parse costs ~5 ms to import."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    hostport, slash, path = rest.partition("/")
    if hostport.startswith("["):  # [::1]:8080
        host, _, port = hostport[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), slash + path + "/healthz"


def _get(scheme: str, host: str, port: int, path: str, timeout_s: float) -> bytes:
    import socket

    sock = socket.create_connection((host, port), timeout=timeout_s)
    try:
        if scheme == "https":
            import ssl

            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
        name = f"[{host}]" if ":" in host else host
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {name}:{port}\r\nUser-Agent: iptvsync-status\r\n\r\n"
                     .encode("ascii"))
        chunks, size = [], 0
        while size < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if not chunks:
            raise ConnectionResetError("closed without an answer")
        return b"".join(chunks)
    finally:
        sock.close()


def _last_key_refusal(conn: sqlite3.Connection, since: datetime) -> str | None:
    return conn.execute("SELECT MAX(last_at) FROM rejections WHERE reason = ? AND day >= ?",
                        (KEY_REFUSED, since.strftime("%Y-%m-%d"))).fetchone()[0]


def _accepted_after(conn: sqlite3.Connection, moment: str | None) -> bool:
    """A postback from Monetizze (not ``simulate``'s, which posts our own key) stored since ``moment``
    (its second included: the ledger's times hold whole seconds)."""
    sql = ("SELECT 1 FROM inbox WHERE source = 'postback' AND COALESCE(sale_code, '') NOT LIKE ?"
           + (" AND received_at >= ?" if moment else "") + " LIMIT 1")
    return conn.execute(sql, (SIMULATED_SALE_PREFIX + "%", *([moment] if moment else []))).fetchone() is not None


def key_refused(conn: sqlite3.Connection, t: datetime) -> str | None:
    """A postback shaped like Monetizze's was refused for its chave_unica, and none was accepted
    since: every real sale is being refused (the key in .env is not Monetizze's)."""
    refused = _last_key_refusal(conn, t - REFUSAL_WINDOW)
    if refused is None or _accepted_after(conn, refused):
        return None
    return (f"a Monetizze postback was refused: wrong chave_unica (last at {refused}); copy the chave única from"
            " Monetizze (Ferramentas > Postback) into MONETIZZE_CHAVE_UNICA in .env, restart `serve`, then"
            " send Monetizze's test postback")


def key_verdict(conn: sqlite3.Connection, t: datetime) -> tuple[str, str]:
    """``doctor``'s row on the key: (status, detail)."""
    problem = key_refused(conn, t)
    if problem:
        return "fail", problem
    if not _accepted_after(conn, None):
        return "warn", ("set, but it has never accepted a real postback yet: send Monetizze's test postback"
                        " (Ferramentas > Postback) and see it in `iptvsync inbox list`")
    return "ok", "set; Monetizze's postbacks are accepted"


def max_wait(cfg: Config) -> timedelta:
    return parse_duration(cfg.status.max_wait)


def buyers_waiting(cfg: Config, conn: sqlite3.Connection, t: datetime) -> str | None:
    """Paid buyers whose access message (it waits for the line) is still unsent after max_wait."""
    limit = max_wait(cfg)
    kinds = sorted(NEEDS_SYNC)
    rows = conn.execute(
        "SELECT o.subscription_id, o.created_at, o.last_error AS mail_error, s.last_error AS line_error,"
        " s.applied_enabled FROM outbox o JOIN subscriptions s ON s.id = o.subscription_id"
        f" WHERE o.status = ? AND o.kind IN ({', '.join('?' for _ in kinds)}) AND o.created_at < ?"
        " ORDER BY o.created_at LIMIT 100",
        (MailStatus.PENDING, *kinds, iso(t - limit))).fetchall()
    if not rows:
        return None
    first = rows[0]
    waited = int((t - parse_iso(first[1])).total_seconds() // 60)
    ids = ", ".join(str(r[0]) for r in rows[:SHOWN]) + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")
    if first[4] != 1:
        why = f"the line is not ready ({first[3] or 'panel sync pending'})"
    else:
        why = f"the email is not sent ({first[2] or 'not tried yet'})"
    return (f"{len(rows)}{'+' if len(rows) == 100 else ''} paid buyer(s) waiting over {cfg.status.max_wait} for"
            f" their line or access email (subscriptions {ids}; the first for {waited} min: {why});"
            f" see `iptvsync subs show {first[0]}`")


def emails_to_files(cfg: Config) -> str | None:
    """Real lines but the maildir backend (``init``'s default): every buyer's access email is a
    file on this machine, so the buyer waits forever while everything else looks done."""
    real = [name for name, panel in cfg.panels.items() if panel.caps.real]
    if not real or cfg.email.backend != "maildir":
        return None
    return (f"panel {real[0]} makes real lines, but [email] backend is \"maildir\": buyers' access emails are"
            f" written to {cfg.resolve(cfg.email.maildir)}, never sent; set backend = \"smtp\" in {cfg.path}"
            " (`iptvsync mail test YOU@…` checks it)")
