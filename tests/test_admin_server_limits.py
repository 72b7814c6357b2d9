"""The console's server on loopback against slow and oversized requests: trickling heads from
one address never lock the login page out (a head deadline, a per-address cap), and request
lines, headers, heads and bodies have the receiver's limits (414, 431, 413)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

import pytest
from support.install import wait_for

from iptvsync.admin import server as admin_server

CLIENT_TIMEOUT_S = 20.0  # generous: the page answers at once when the server is not locked out


@pytest.fixture
def served(cfg, monkeypatch):
    """``make_server`` running in this process on a free loopback port: (host, port, server)."""
    cfg = replace(cfg, admin=replace(cfg.admin, host="127.0.0.1", port=0))
    server = admin_server.make_server(cfg)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    host, port = server.bind_addr[:2]
    yield host, port, server
    if hasattr(server, "head_guard"):
        server.head_guard.stop()
    server.stop()
    thread.join(10)


def exchange(host: str, port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    """Send ``data``, then read the answer until the server closes or the answer is whole."""
    with socket.create_connection((host, port), timeout=CLIENT_TIMEOUT_S, source_address=(source, 0)) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # refused before all was sent: the answer is already waiting
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_slow_heads_from_one_address_never_lock_the_login_page_out(served):
    host, port, server = served
    stop = threading.Event()
    slow, begun = [], []

    def trickle():
        """A head that never ends: a header line now and then."""
        try:
            sock = socket.create_connection((host, port), timeout=5, source_address=("127.0.0.1", 0))
        except OSError:
            return
        slow.append(sock)
        try:
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            begun.append(sock)
            n = 0
            while not stop.wait(0.5):
                n += 1
                sock.sendall(b"X-Slow-%d: y\r\n" % n)
        except OSError:
            pass  # cut by the server

    attackers = [threading.Thread(target=trickle, daemon=True) for _ in range(server.requests.min + 2)]
    for attacker in attackers:
        attacker.start()
    try:
        # every slow head has begun (a connection refused outright never reaches `slow`)
        wait_for(lambda: len(begun) == len(slow) and len(slow) + sum(not a.is_alive() for a in attackers)
                 >= len(attackers), "the slow heads to begin")
        for source in ("127.0.0.2", "127.0.0.1"):  # another address, and the attacker's own (a tunnel)
            answer = exchange(host, port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                              source=source)
            assert status_of(answer) == 200, (source, answer[:200])
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        for attacker in attackers:
            attacker.join(10)


def test_a_head_that_trickles_past_the_deadline_is_cut(served, monkeypatch):
    host, port, server = served
    server.head_guard.timeout_s = 1.0
    with socket.create_connection((host, port), timeout=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        cut = False
        for n in range(60):  # 30 s of trickling if nobody cuts it
            time.sleep(0.5)
            try:
                sock.sendall(b"X-Slow-%d: y\r\n" % n)
                sock.setblocking(False)
                try:
                    if sock.recv(65536) == b"":
                        cut = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except OSError:
                cut = True
                break
        assert cut, "the server kept reading a head past its deadline"


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /login?" + b"a" * (9 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /login?" + b"a" * (20 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /login HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 * 1024) + b"\r\n\r\n", 431),
    (b"GET /login HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200_000)) + b"\r\n",
     431),
    (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
     b"Content-Length: 70000\r\n\r\n" + b"a" * 70000, 413),
])
def test_oversized_requests_are_refused(served, request_bytes, status):
    host, port, _ = served
    assert status_of(exchange(host, port, request_bytes)) == status


def test_a_request_within_the_limits_is_served(served):
    host, port, _ = served
    head = b"GET /login HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(90)) + b"\r\n"
    assert status_of(exchange(host, port, head)) == 200


def test_one_address_reads_only_a_few_heads_at_once_the_oldest_is_cut(served):
    """Behind an SSH tunnel the operator shares 127.0.0.1 with a local attacker: the newcomer is
    served, the head waiting longest is cut."""
    host, port, server = served
    held = []
    try:
        for _ in range(admin_server.PER_ADDRESS):
            sock = socket.create_connection((host, port), timeout=CLIENT_TIMEOUT_S)
            sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")  # a head never finished
            held.append(sock)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while server.head_guard._per.get("127.0.0.1", 0) < admin_server.PER_ADDRESS and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = exchange(host, port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(answer) == 200
        assert held[0].recv(100) == b""  # the oldest was cut (the server closed it)
    finally:
        for sock in held:
            sock.close()
