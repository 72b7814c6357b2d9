"""A real SMTP server on loopback (aiosmtpd) that records what it receives.

``smtp_server()`` starts one per test: plain, STARTTLS or implicit TLS (a self-signed
certificate made here with ``cryptography``), optional AUTH, and scripted refusals such as
``rcpt_replies={"x@example.com": "550 5.1.1 No such user"}`` or ``data_reply="451 4.3.0 Later"``.
"""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
QUEUED_REPLY = "250 2.0.0 Ok: queued as 4F2XQK"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class RecordingHandler:
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    received: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)  # users that authenticated successfully

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.data_reply:
            return self.data_reply
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return QUEUED_REPLY


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler
    client_context: ssl.SSLContext  # trusts the server's self-signed certificate

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def logins(self) -> list[str]:
        return self.handler.logins


@contextmanager
def smtp_server(*, tls: str = "none", auth: tuple[str, str] | None = None,
                rcpt_replies: dict[str, str] | None = None,
                data_reply: str | None = None) -> Iterator[SmtpServer]:
    """``tls``: "none", "starttls" (required before AUTH and MAIL) or "implicit"."""
    handler = RecordingHandler(rcpt_replies=dict(rcpt_replies or {}), data_reply=data_reply)
    options: dict = {}
    if tls == "starttls":
        options.update(tls_context=server_context(), require_starttls=True)
    elif tls == "implicit":
        options.update(ssl_context=server_context())
    if auth is not None:
        options["authenticator"] = _authenticator(handler, *auth)
        if tls == "implicit":
            # aiosmtpd only counts STARTTLS as TLS and would hide AUTH on an SMTPS socket
            # (aio-libs/aiosmtpd#281); the socket is encrypted, so let AUTH through.
            options.update(auth_require_tls=False)
        else:
            options.update(auth_required=True, auth_require_tls=True)
    port = free_port()
    controller = Controller(handler, hostname=HOST, port=port, **options)
    controller.start()
    try:
        yield SmtpServer(HOST, port, handler, client_context())
    finally:
        controller.stop()


def free_port() -> int:
    """A loopback port nobody listens on (also the "server down" case)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_context() -> ssl.SSLContext:
    cert_file, key_file, _ = _self_signed()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=_self_signed()[2])


def _authenticator(handler: RecordingHandler, username: str, password: str):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == username.encode()
              and auth_data.password == password.encode())
        if ok:
            handler.logins.append(username)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535
    return authenticate


@lru_cache(maxsize=1)
def _self_signed() -> tuple[str, str, str]:
    """(cert file, key file, cert PEM) for 127.0.0.1 / localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iptvsync test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="iptvsync-smtp-cert-"))
    atexit.register(shutil.rmtree, folder, True)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(folder / "cert.pem"), str(folder / "key.pem"), cert_pem.decode()
