"""A real ``iptvsync serve`` process on loopback (``Receiver``) and the checks the receiver
tests share. The ``start`` and ``receiver`` fixtures (conftest) run them."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from iptvsync.ledger.inbox import raw_body
from iptvsync.monetizze.form import build_form

from .install import BASE_TOML, CHAVE, fixture_body, wait_for, write_install

PATH = "/monetizze/postback/s3cr3tpath"  # [receiver] path of BASE_TOML: a capability, never logged
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
BUYER_EMAILS = ("maria@example.com", "redacted@example.com")
WAIT_S = 30.0  # generous on purpose: CI machines are small and busy; nothing here asserts timing
ACCESS_LINE = re.compile(r'iptvsync\.access: (\S+) "(\S+) (\S+)" (\d{3}) [\d.]+ms')
_serial = itertools.count()


# --- helpers --------------------------------------------------------------------------------

def install_with(tmp_path: Path, *, receiver: str = "", product: str = "", extra: str = "") -> Path:
    """An install from BASE_TOML with lines added to [receiver] and [products.145388]."""
    toml = (BASE_TOML.replace("[receiver]\n", "[receiver]\n" + receiver, 1)
            .replace("[products.145388]\n", "[products.145388]\n" + product, 1) + extra)
    return write_install(tmp_path / "install", toml)


def query(ledger: Path, sql: str, params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(ledger, timeout=WAIT_S)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()



def stream_until_answered(sock, declared: int, limit_s: float, wait_s: float = WAIT_S) -> bytes:
    """On a connected socket whose request head (and chunk size line) is sent: stream up to
    ``declared`` bytes in 1 MiB writes until the server answers or ``limit_s`` passes, then read
    the rest of its answer (``wait_s`` per read). Returns what the server answered."""
    block = b"x" * (1 << 20)
    sock.setblocking(False)
    answer, sent, deadline = b"", 0, time.monotonic() + limit_s
    while time.monotonic() < deadline and sent < declared:
        try:
            answer += sock.recv(4096)
            break  # the server has answered (and stops reading)
        except BlockingIOError:
            pass
        except OSError:
            break
        try:
            sent += sock.send(block)
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:
            break
    sock.settimeout(wait_s)
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            answer += chunk
    return answer

def logged_refusals(log: str, status: int, reason: str) -> int:
    """How many refusals of (status, reason) the log accounts for: logged one by one, or in the
    summary lines of the rate limit (``iptvsync.receiver.refusals``)."""
    one_by_one = len(re.findall(rf": rejected {status} from \S+: {re.escape(reason)}$", log, re.MULTILINE))
    summed = sum(int(n.replace(",", "")) for n in re.findall(
        rf"\.\.\. and ([\d,]+) more refusals \({status} {re.escape(reason)}\) in the last \d+ s", log))
    return one_by_one + summed


def sale_body(sale: str) -> bytes:
    """A realistic first-charge postback form (~5 kB, as Monetizze posts it) for sale code ``sale``."""
    payload = json.loads(fixture_body("approved-first-charge.json"))
    payload["venda"]["codigo"] = sale
    return build_form(payload)


def assert_no_secrets(text: str | bytes, *also: str) -> None:
    """The chave_unica, the receiver path's secret segment and buyer emails appear nowhere."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for secret in (CHAVE, PATH.rsplit("/", 1)[1], *BUYER_EMAILS, *also):
        assert secret not in text, f"{secret!r} leaked"


class Receiver:
    """A real ``python -m iptvsync serve --port 0`` process, its log file and its ledger."""

    def __init__(self, config: Path, *args: str):
        self.config = config
        self.ledger = config.parent / "iptvsync.db"
        self.log_path = config.parent / f"serve-{next(_serial)}.log"
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "iptvsync", "--config", str(config), "serve", "--port", "0", *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file)
        self.url = wait_for(self._announced_url, "the receiver to announce its URL")
        self.port = int(self.url.rsplit(":", 1)[1])

    def _announced_url(self) -> str | None:
        match = re.search(r"iptvsync receiver on (\S+)", self.log())
        if not match and self.proc.poll() is not None:
            raise AssertionError(f"iptvsync serve exited {self.proc.returncode}:\n{self.log()}")
        return match.group(1) if match else None

    def post(self, body, content_type: str | None = FORM, *, path: str = PATH, headers: dict | None = None,
             timeout: float = WAIT_S, **kwargs) -> requests.Response:
        headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
        return requests.post(self.url + path, data=body, headers=headers, timeout=timeout, **kwargs)

    def get(self, path: str, timeout: float = WAIT_S, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=timeout, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def access_lines(self) -> list[tuple[str, str, str, int]]:
        """(client, method, route, status) of each access-log line."""
        return [(m[1], m[2], m[3], int(m[4])) for m in ACCESS_LINE.finditer(self.log())]

    def inbox(self) -> list[dict]:
        """The stored rows, each body as received (inflated: it is stored compressed)."""
        rows = query(self.ledger, "SELECT * FROM inbox ORDER BY id")
        for row in rows:
            row["body"] = raw_body(row["body"], row.pop("body_encoding"))
        return rows

    def rejections(self) -> list[dict]:
        return query(self.ledger, "SELECT * FROM rejections ORDER BY status, reason")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=WAIT_S)


def assert_rejected(receiver: Receiver, response: requests.Response, status: int, reason: str, *,
                    remote: str = "127.0.0.1") -> None:
    """The answer, one counted rejection with its reason, a log line, nothing stored, no secrets."""
    assert response.status_code == status
    assert response.json() == {"error": reason}

    def counted():
        return [r for r in receiver.rejections() if (r["status"], r["reason"]) == (status, reason)]

    [row] = wait_for(counted, f"the {status} to be counted")
    assert (row["count"], row["last_remote"]) == (1, remote)
    assert f"rejected {status} from {remote}: {reason}" in receiver.log()
    assert receiver.access_lines()[-1][3] == status
    assert receiver.inbox() == []
    assert_no_secrets(receiver.log())


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """cert.pem and key.pem for 127.0.0.1, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
