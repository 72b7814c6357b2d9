"""The public door tried as an attacker would (issue 17, items 1, 2, 3 and 6), against a real
``iptvsync serve`` on loopback, over plain HTTP and over TLS.

No timing assertions: where the old receiver was slow, a generous client timeout it could not
meet is the check (a legit postback answered at all while thousands of connections are held).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import time

import pytest
from support.crowd import Crowd, LoneGate, wait_held
from support.install import wait_for
from support.receiver import FORM, PATH, WAIT_S, install_with, sale_body, self_signed_certificate

TLS = 'certfile = "../cert.pem"\nkeyfile = "../key.pem"\n'


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _connect(receiver, context: ssl.SSLContext | None, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT_S, source_address=(source, 0))
    return context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def _send_and_read(sock, data: bytes) -> bytes:
    sock.sendall(data)
    answer = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _stream(sock, first: bytes, filler: bytes, limit_s: float) -> bytes:
    """Send ``first``, then ``filler`` over and over until the receiver answers (or closes) or
    ``limit_s`` passes; returns the answer."""
    sock.settimeout(0.05)
    sock.sendall(first)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
            if not data:
                return b""
            rest = b""
            sock.settimeout(WAIT_S)
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    rest += chunk
            return data + rest
        except (TimeoutError, ssl.SSLWantReadError):
            pass
        except OSError:
            return b""
        try:
            sock.sendall(filler)
        except TimeoutError:
            pass
        except OSError:
            break
    return b""


@pytest.fixture(params=["http", "tls"])
def door(request, start, tmp_path):
    """(receiver, client TLS context or None), the receiver over plain HTTP or its own TLS."""
    if request.param == "http":
        return start(install_with(tmp_path)), None
    cert, _key = self_signed_certificate(tmp_path)
    return start(install_with(tmp_path, receiver=TLS)), ssl.create_default_context(cafile=str(cert))


# --- 1. sizes of the request line and the headers ------------------------------------------------

@pytest.mark.parametrize("first, filler, status, reason", [
    (b"POST /", b"a" * 65536, 414, "request line too long"),
    (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode(), b"b" * 65536, 431, "header line too long"),
    (f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode(), b"X-Many: 1\r\n" * 200, 431, "too many headers"),
])
def test_an_endless_request_line_or_header_is_refused_and_memory_stays_flat(door, first, filler, status, reason):
    receiver, context = door
    before = _rss_mb(receiver.proc.pid)
    with _connect(receiver, context) as sock:
        answer = _stream(sock, first, filler, limit_s=8)
    assert _status(answer) == status, answer[:80]
    assert _rss_mb(receiver.proc.pid) - before < 30  # the old receiver buffered it all: hundreds of MB
    wait_for(lambda: any((r["status"], r["reason"]) == (status, reason) for r in receiver.rejections()),
             f"the {status} to be counted")
    assert f"rejected {status} from 127.0.0.1: {reason}" in receiver.log()
    assert "Traceback" not in receiver.log()


def test_eight_streams_of_endless_request_lines_keep_memory_bounded(start, tmp_path):
    receiver = start(install_with(tmp_path))
    before = _rss_mb(receiver.proc.pid)
    socks = [_connect(receiver, None) for _ in range(8)]
    try:
        for sock in socks:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(b"POST /")
        peak, deadline = before, time.monotonic() + 4
        while time.monotonic() < deadline:
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"a" * 65536)
            peak = max(peak, _rss_mb(receiver.proc.pid))
    finally:
        for sock in socks:
            sock.close()
    assert peak - before < 30, (before, peak)
    assert receiver.post(sale_body("71000001")).status_code == 200


def test_a_head_just_under_the_limits_is_served(receiver):
    headers = {f"X-Pad-{n}": "v" * 100 for n in range(90)}  # 90 headers, ~11 kB: under 100 and 16 KiB
    response = receiver.post(sale_body("71000002"), headers=headers)
    assert (response.status_code, response.json()["result"]) == (200, "stored")


# --- 6. headers WSGI would misread ---------------------------------------------------------------

@pytest.mark.parametrize("head, reason", [
    ("Host: x\r\nX_Forwarded_For: 10.9.9.9\r\n", "underscore in a header name"),
    ("", "no host header"),
    ("Host: x\r\nContent-Length: +5\r\n", "bad content-length"),
    ("Host: x\r\nContent-Length: 5_0\r\n", "bad content-length"),
])
def test_headers_wsgi_would_misread_are_400(start, tmp_path, head, reason):
    receiver = start(install_with(tmp_path, receiver='trusted_proxies = ["127.0.0.1/32"]\n'
                                                     'allowed_ips = ["203.0.113.0/24"]\n'))
    body = sale_body("76000001")
    if "Content-Length" not in head:
        head += f"Content-Length: {len(body)}\r\n"
    with _connect(receiver, None) as sock:
        answer = _send_and_read(sock, f"POST {PATH} HTTP/1.1\r\n{head}X-Forwarded-For: 203.0.113.7\r\n"
                                      f"Content-Type: {FORM}\r\nConnection: close\r\n\r\n".encode() + body)
    assert _status(answer) == 400, answer[:80]
    assert receiver.inbox() == []
    wait_for(lambda: f"rejected 400 from 127.0.0.1: {reason}" in receiver.log(), "the refusal's log line")


def test_the_real_forwarded_header_from_a_trusted_proxy_still_works(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver='trusted_proxies = ["127.0.0.1/32"]\n'
                                                     'allowed_ips = ["203.0.113.0/24"]\n'))
    response = receiver.post(sale_body("76000002"), headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.status_code == 200
    assert receiver.inbox()[0]["remote_addr"] == "203.0.113.7"


# --- 2. a burst of SIGHUPs -----------------------------------------------------------------------

def test_a_burst_of_sighups_neither_hangs_the_tls_receiver_nor_its_sigterm(start, tmp_path):
    cert, _key = self_signed_certificate(tmp_path)
    receiver = start(install_with(tmp_path, receiver=TLS))
    for _ in range(30):  # a certbot hook and a Caddy hook, each sending a few
        os.kill(receiver.proc.pid, signal.SIGHUP)
        time.sleep(0.003)
    response = receiver.post(sale_body("72000001"), verify=str(cert), timeout=15)
    assert response.status_code == 200
    assert receiver.stop(signal.SIGTERM) == 0  # within WAIT_S: the old receiver never ended
    assert "TLS certificate reloaded (SIGHUP)" in receiver.log()
    assert "Traceback" not in receiver.log()


# --- 3. idle and trickling connections -----------------------------------------------------------

SOURCES = [f"127.0.{1 + n // 250}.{2 + n % 250}" for n in range(100)]  # 100 addresses x 15: under the cap


@pytest.mark.parametrize("modes", [["idle", "head", "body"], ["idle", "tls-idle", "tls-head", "tls-body"]],
                         ids=["http", "tls"])
def test_a_legit_postback_is_answered_while_1500_connections_idle_or_trickle(start, tmp_path, modes):
    tls = modes[-1].startswith("tls")
    context = None
    extra = "header_timeout_s = 60\nrequest_timeout_s = 60\n"  # the crowd is held the whole test
    if tls:
        cert, _key = self_signed_certificate(tmp_path)
        context = ssl.create_default_context(cafile=str(cert))
        extra += TLS
    receiver = start(install_with(tmp_path, receiver=extra))
    crowd = Crowd(receiver.port, SOURCES, 15, modes, path=PATH, context=context)
    try:
        assert crowd.opened == 1500
        wait_held(crowd, 2.0)
        for n in range(3):  # the old receiver: every thread held, the postback waited for a deadline (60 s)
            with _connect(receiver, context, source="127.0.9.9") as sock:
                sock.settimeout(8)
                body = sale_body(f"7300000{n}")
                answer = _send_and_read(sock, f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                                              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                                        + body)
            assert _status(answer) == 200, answer[:80]
        assert crowd.held() == 1500 and crowd.cut == 0  # nobody was cut to make room
        threads = int(next(line.split()[1] for line in open(f"/proc/{receiver.proc.pid}/status")
                           if line.startswith("Threads:")))
        assert threads < 200  # no thread per held connection
    finally:
        crowd.close()
    assert len(receiver.inbox()) == 3


def test_past_max_waiting_the_connection_waiting_longest_is_answered_408_and_closed(monkeypatch):
    """The gate on its own, with real sockets: one more than ``MAX_WAITING`` connections wait."""
    from iptvsync.receiver import gate as gate_module

    monkeypatch.setattr(gate_module, "MAX_WAITING", 3)
    lone = LoneGate()
    gate, refused, handed = lone.gate, lone.refused, lone.handed
    gate.start()
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        for n, (server_side, client_side) in enumerate(pairs, start=1):
            client_side.sendall(b"POST / HTTP/1.1\r\n")  # a head begun, never finished
            lone.add(server_side, n)
            time.sleep(0.05)  # in order: the first is the one waiting longest
        oldest = pairs[0][1]
        oldest.settimeout(WAIT_S)
        assert oldest.recv(100).startswith(b"HTTP/1.1 408 ")
        assert oldest.recv(100) == b""  # closed at once, not left lingering
        wait_for(lambda: refused == [(408, "request not received in time", "127.0.0.1")], "the refusal")
        for _server_side, client_side in pairs[1:]:
            client_side.setblocking(False)
            with pytest.raises(BlockingIOError):
                client_side.recv(100)  # still waiting, untouched
        assert gate.waiting == 3
        gate.stop()  # stopping: requests begun go to request threads (the SIGTERM drain)
        assert sorted(handed) == [2, 3, 4]
    finally:
        gate.stop()
        for server_side, client_side in pairs:
            server_side.close()
            client_side.close()
