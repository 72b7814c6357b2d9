"""Native TLS: `serve` picks up a renewed certificate (SIGHUP or the files changing) while a
request that started under the old one completes."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import urllib.request

from cryptography import x509
from cryptography.x509.oid import NameOID
from support.install import BASE_TOML, wait_for, write_install
from support.serve import postback_body, serving
from support.tls import make_cert

PATH = "/monetizze/postback/s3cr3tpath"


def served_name(port: int) -> str:
    """The common name of the certificate a new handshake gets."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def install_with_cert(tmp_path):
    live = tmp_path / "live"
    make_cert(live, "first")
    toml = BASE_TOML.replace('certfile = ""', "").replace(
        '[receiver]', f'[receiver]\ncertfile = "{live / "cert.pem"}"\nkeyfile = "{live / "key.pem"}"', 1)
    return write_install(tmp_path / "install", toml), live


def renew(tmp_path, live, name):
    """Like certbot: the new pair is written elsewhere, then moved into place."""
    cert, key = make_cert(tmp_path / name, name)
    shutil.move(str(key), live / "key.pem")
    shutil.move(str(cert), live / "cert.pem")


def test_sighup_swaps_the_certificate_and_the_request_in_flight_completes(tmp_path):
    config, live = install_with_cert(tmp_path)
    with serving(config) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        assert served_name(port) == "first"
        # a request in flight: headers and half the body sent under the first certificate
        body = postback_body()
        ctx = ssl.create_default_context(cafile=str(live / "cert.pem"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:100])
        renew(tmp_path, live, "second")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served_name(port) == "second", "the renewed certificate", timeout=10)
        tls.sendall(body[100:])
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        tls.close()
        assert answer.startswith(b"HTTP/1.1 200") and b'"stored"' in answer, answer
        assert proc.poll() is None  # SIGHUP did not stop the receiver


def test_a_certificate_replaced_on_disk_is_picked_up_without_a_signal(tmp_path):
    config, live = install_with_cert(tmp_path)
    with serving(config) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        assert served_name(port) == "first"
        renew(tmp_path, live, "third")
        wait_for(lambda: served_name(port) == "third", "the certificate written to disk", timeout=20)


def test_a_broken_renewal_keeps_the_old_certificate_serving(tmp_path):
    config, live = install_with_cert(tmp_path)
    with serving(config) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        (live / "cert.pem").write_text("not a certificate")
        proc.send_signal(signal.SIGHUP)
        said = next(line for line, _ in zip(iter(proc.stderr.readline, ""), range(50), strict=False)
                    if "TLS reload" in line)
        assert "failed, still serving the previous certificate" in said
        assert served_name(port) == "first" and proc.poll() is None


def test_sighup_without_tls_does_not_stop_the_receiver(tmp_path):
    config = write_install(tmp_path / "install")
    with serving(config) as (url, proc):
        proc.send_signal(signal.SIGHUP)
        said = next(line for line, _ in zip(iter(proc.stderr.readline, ""), range(50), strict=False)
                    if "SIGHUP" in line)
        assert "no TLS certificate to reload" in said
        with urllib.request.urlopen(url + "/healthz", timeout=10) as resp:
            assert resp.status == 200
        assert proc.poll() is None
