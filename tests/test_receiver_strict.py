"""The receiver's door held to the letter (issue: pipelining, duplicate Content-Length, lenient
heads, huge JSON numbers), against a real ``iptvsync serve`` on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import time

import pytest
from support.crowd import LoneGate
from support.install import CHAVE, fixture_body, wait_for
from support.receiver import FORM, JSON, PATH, WAIT_S, install_with, sale_body, self_signed_certificate

from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.postback import parse
from iptvsync.monetizze.redact import redact
from iptvsync.receiver.tls import POLL_S

TLS = 'certfile = "../cert.pem"\nkeyfile = "../key.pem"\n'


def _exchange(port: int, data: bytes, answers: int, context: ssl.SSLContext | None = None,
              first: bytes = b"") -> list[int]:
    """Send ``data`` in one write on one connection (kept alive) and read ``answers`` answers
    (the statuses in order); fewer if the receiver stops answering within 3 s. ``first``, if
    given, is sent alone before and its answer read (counted among the statuses)."""
    statuses: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        if first:
            sock.sendall(first)
            statuses += _read_answers(sock, 1)
        sock.sendall(data)
        statuses += _read_answers(sock, answers)
    return statuses


def _read_answers(sock, answers: int) -> list[int]:
    statuses: list[int] = []
    sock.settimeout(3)
    buf = b""
    with contextlib.suppress(OSError):
        while len(statuses) < answers:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                continue
            head = buf[:end].decode("latin-1")
            statuses.append(int(head.split(" ", 2)[1]))
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")[1:]
                           if line.lower().startswith("content-length:")), 0)
            while len(buf) < end + 4 + length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
            buf = buf[end + 4 + length:]
    return statuses


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _post(body: bytes, content_type: str = FORM, extra: str = "") -> bytes:
    return (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _post_sized(body: bytes, size: int) -> bytes:
    """A postback of ``body`` padded (a ``padding`` field) to exactly ``size`` bytes of request."""
    body += b"&padding="
    pad = size - len(_post(body))
    request = _post(body + b"a" * (pad - (len(_post(body + b"a" * pad)) - size)))  # Content-Length grew a digit
    assert len(request) == size
    return request


def _sized(request: bytes, size: int) -> bytes:
    """``request`` (with an ``X-Pad: `` header) padded to exactly ``size`` bytes."""
    padded = request.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (size - len(request)), 1)
    assert len(padded) == size
    return padded


@pytest.mark.parametrize("requests, expected", [
    ([_get("/healthz"), _get("/healthz")], [200, 200]),
    ([_get("/nothing-here"), _get("/nor-here"), _get("/healthz")], [404, 404, 200]),
    ([_post(sale_body("72000001")), _get("/healthz")], [200, 200]),
    # past the 8 KiB read buffer: the rest waits among the bytes the gate already read
    ([_post(sale_body("72000004") + b"&padding=" + b"a" * 12000), _get("/healthz")], [200, 200]),
    ([_get("/healthz?" + "a" * 7000), _get("/healthz?" + "b" * 7000), _get("/healthz")], [200, 200, 200]),
    # a body the app does not read (404, 405) but that is all here is skipped, not a reason to close
    ([b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", _get("/healthz")], [404, 200]),
    ([b"PUT " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab", _get("/x")], [405, 404]),
    # a body past the gate's 32 KiB, read on the request thread: over TLS the next request
    # may wait in the TLS session's own buffer, where no select() sees it
    ([_post(sale_body("72000005") + b"&padding=" + b"a" * 40000), _get("/healthz")], [200, 200]),
    ([_get("/healthz")] * 120, [200] * 120),  # more than a thread serves in a row
    # a first request ending exactly on the 8 KiB read buffer's edge: the next one was left
    # among the bytes the gate had read, where no select() sees it (answered 408 after 10 s)
    ([_sized(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: \r\n\r\n", 8192), _get("/healthz")],
     [200, 200]),
    ([_post_sized(sale_body("72000008"), 16384), _get("/healthz")], [200, 200]),
], ids=["two-healthz", "three-404-404-200", "post-then-get", "big-post-then-get", "three-big-gets",
        "404-with-body-then-get", "405-with-body-then-get", "40k-post-then-get", "120-gets",
        "8-KiB-get-then-get", "16-KiB-post-then-get"])
@pytest.mark.parametrize("scheme", ["http", "tls"])
@pytest.mark.parametrize("after_one", [False, True], ids=["fresh", "kept-alive"])
def test_pipelined_requests_are_all_answered_in_order(start, tmp_path, requests, expected, scheme, after_one):
    context = None
    if scheme == "tls":
        cert, _key = self_signed_certificate(tmp_path)
        context = ssl.create_default_context(cafile=str(cert))
    receiver = start(install_with(tmp_path, receiver=TLS if context else ""))
    first = _get("/healthz") if after_one else b""
    statuses = _exchange(receiver.port, b"".join(requests), len(requests), context, first)
    assert statuses == [200] * after_one + expected


@pytest.mark.parametrize("scheme", ["http", "tls"])
def test_pipelined_requests_after_the_connection_went_idle_are_answered(start, tmp_path, scheme):
    """Each batch comes after a pause, when the connection waits in cheroot's selector."""
    context = None
    if scheme == "tls":
        cert, _key = self_signed_certificate(tmp_path)
        context = ssl.create_default_context(cafile=str(cert))
    receiver = start(install_with(tmp_path, receiver=TLS if context else ""))
    batches = ([_get("/healthz")], [_get("/healthz")] * 2, [_get("/a"), _get("/b")],
               [_post(sale_body("72000006")), _get("/healthz")])
    answers = []
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT_S) as raw:
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        for batch in batches:
            time.sleep(0.3)  # past the request thread's 10 ms wait for a next request
            sock.sendall(b"".join(batch))
            answers.append(_read_answers(sock, len(batch)))
    assert answers == [[200], [200, 200], [404, 404], [200, 200]]


def test_two_different_content_lengths_are_refused(receiver):
    body = sale_body("72000002")
    data = _post(body, extra=f"Content-Length: {len(body) - 1}\r\n")
    assert _exchange(receiver.port, data, 1) == [400]
    wait_for(lambda: "rejected 400 from 127.0.0.1: conflicting content-length" in receiver.log(),
             "the 400 to be logged")


def test_identical_repeated_content_lengths_are_accepted(receiver):
    body = sale_body("72000003")
    assert _exchange(receiver.port, _post(body, extra=f"Content-Length: {len(body)}\r\n"), 1) == [200]


@pytest.mark.parametrize("data", [
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x01b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x7fb\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX A: 1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n: 1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n folded\r\n\r\n",
    b"G\x01T /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"G(T /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
], ids=["nul-value", "ctl-value", "del-value", "space-in-name", "empty-name", "obs-fold", "ctl-method",
        "separator-method"])
def test_lenient_heads_are_refused_400(receiver, data):
    assert _exchange(receiver.port, data, 1) == [400]


def test_a_tab_in_a_header_value_is_accepted(receiver):
    data = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\tb\r\n\r\n"
    assert _exchange(receiver.port, data, 1) == [200]


def test_a_bad_certificate_file_is_logged_once_per_state_and_sighup_still_tries(start, tmp_path):
    cert, _key = self_signed_certificate(tmp_path)
    receiver = start(install_with(tmp_path, receiver=TLS))
    failed = "TLS reload (file changed) failed"
    original = cert.read_text()
    cert.write_text("not a certificate\n")
    wait_for(lambda: failed in receiver.log(), "the failed reload to be logged")
    time.sleep(3 * POLL_S + 0.5)  # three more looks at the unchanged files: nothing more logged
    assert receiver.log().count(failed) == 1
    cert.write_text("still not a certificate, another state\n")
    wait_for(lambda: receiver.log().count(failed) == 2, "the new state's failure to be logged")
    os.kill(receiver.proc.pid, signal.SIGHUP)
    wait_for(lambda: "TLS reload (SIGHUP) failed" in receiver.log(), "SIGHUP to try and log")
    time.sleep(POLL_S + 0.5)
    assert receiver.log().count(failed) == 2
    context = ssl.create_default_context(cadata=original)  # the previous certificate still serves
    assert _exchange(receiver.port, _get("/healthz"), 1, context) == [200]


def _huge_event_bodies(digits: int, sale: str) -> dict[str, tuple[bytes, str]]:
    """A real postback whose ``tipoEvento.codigo`` is a ``digits``-digit integer: as JSON, and
    as a form whose ``json`` field (and bracket field) hold it."""
    payload = json.loads(fixture_body("approved-first-charge.json"))
    payload["venda"]["codigo"] = sale
    payload["tipoEvento"]["codigo"] = "HUGE"
    huge = "9" * digits
    as_json = json.dumps(payload).replace('"HUGE"', huge).encode()
    as_form = build_form(payload).replace(b"%22HUGE%22", huge.encode()).replace(b"HUGE", huge.encode())
    return {"json": (as_json, JSON), "form": (as_form, FORM)}


@pytest.mark.parametrize("digits", [4400, 50000])
@pytest.mark.parametrize("kind", ["json", "form"])
def test_an_authenticated_postback_with_a_huge_number_is_stored_with_the_number_absent(receiver, digits, kind):
    sale = f"7300{digits}{kind}"
    body, content_type = _huge_event_bodies(digits, sale)[kind]
    assert str(digits * "9") in body.decode("ascii")
    response = receiver.post(body, content_type)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "stored"
    rows = [row for row in receiver.inbox() if row["sale_code"] == sale]
    assert len(rows) == 1
    # the huge code is absent: the event comes from the next source, the sale's own status code
    assert parse(rows[0]["body"], rows[0]["content_type"])[1].event_source != "tipoEvento"
    assert rows[0]["event"] == 2


def test_a_key_hidden_by_an_escape_is_redacted_from_a_body_with_a_huge_number():
    # one letter of each half escaped: only a parse finds the key
    escaped = "".join(f"\\u{ord(c):04x}" if i in (10, 26) else c for i, c in enumerate(CHAVE))
    body = ('{"chave_unica": "' + escaped + '", "tipoEvento": {"codigo": ' + "7" * 5000 + "}}").encode()
    cleaned = redact(body, CHAVE, JSON)
    assert CHAVE not in json.dumps(json.loads(cleaned.decode(), parse_int=str))
    assert "7" * 5000 in cleaned.decode()  # kept, as its digits


def _threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_slow_bodies_on_the_secret_path_cost_no_thread_and_do_not_stall_a_real_postback(start, tmp_path):
    """40 connections (8 from each of 5 addresses) declare a 100 kB body on the secret path and
    trickle it: the gate holds them, so with 4 threads (at most 8) a real postback is still
    answered, and no thread is added for them."""
    receiver = start(install_with(tmp_path, receiver="threads = 4\nmax_threads = 8\n"))
    before = _threads_of(receiver.proc.pid)
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\n"
            "Content-Length: 100000\r\n\r\n").encode()
    socks = []
    try:
        for n in range(40):
            sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT_S,
                                            source_address=(f"127.0.1.{2 + n // 8}", 0))
            sock.sendall(head + b"a" * 40000)  # past the old 32 KiB the gate would gather
            socks.append(sock)
        time.sleep(1.5)  # the old receiver handed all of them to threads (and added threads)
        for sock in socks:
            sock.sendall(b"a" * 100)
        # a client timeout the old receiver could not meet: its threads were all held
        response = receiver.post(sale_body("72000007"), timeout=5)
        assert response.status_code == 200
        assert _threads_of(receiver.proc.pid) <= before
    finally:
        for sock in socks:
            sock.close()


def test_the_body_deadline_runs_from_the_head_even_while_waiting_for_a_thread(start, tmp_path):
    """Bodies the gate leaves to a thread (after ``Expect: 100-continue``) never sent, one
    thread: each is answered 408 ``request_timeout_s`` after its head, not after its turn came
    (the fifth waited for four deadlines in a row: ~5 x 2 s)."""
    receiver = start(install_with(tmp_path, receiver="request_timeout_s = 2\nthreads = 1\nmax_threads = 1\n"))
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\n"
            "Expect: 100-continue\r\nContent-Length: 50\r\n\r\n").encode()
    socks, sent = [], time.monotonic()
    for n in range(5):
        sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT_S,
                                        source_address=(f"127.0.2.{2 + n}", 0))
        sock.sendall(head)
        socks.append(sock)
    statuses = []
    for sock in socks:
        answer = b""
        with contextlib.suppress(OSError):
            while b"408" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
        statuses.append(b"408" in answer)
        sock.close()
    assert statuses == [True] * 5
    assert time.monotonic() - sent < 2 + 5  # a deadline, not a timing measure: the old one took ~10 s


def test_past_the_gates_byte_budget_the_connection_holding_the_most_is_cut(monkeypatch):
    """The gate on its own, with real sockets: three slow bodies together pass ``BUDGET``."""
    from iptvsync.receiver import gate as gate_module

    monkeypatch.setattr(gate_module, "BUDGET", 100_000)
    lone = LoneGate()
    gate, refused, handed = lone.gate, lone.refused, lone.handed
    gate.start()
    pairs = [socket.socketpair() for _ in range(3)]
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n"
    try:
        for n, (server_side, client_side) in enumerate(pairs, start=1):
            lone.add(server_side, n)
            client_side.sendall(head + b"a" * (20_000 if n != 2 else 60_000))  # the second holds the most
            if n < 3:  # the third passes the budget
                wait_for(lambda n=n: gate.held >= (len(head) + 20_000) * n, "the bytes to be gathered")
        biggest = pairs[1][1]
        biggest.settimeout(WAIT_S)
        assert biggest.recv(100).startswith(b"HTTP/1.1 408 ")
        wait_for(lambda: refused == [(408, "body not received in time", "127.0.0.2")], "the refusal")
        assert gate.held <= 100_000
        for index in (0, 2):
            pairs[index][1].setblocking(False)
            with pytest.raises(BlockingIOError):
                pairs[index][1].recv(100)  # still waiting, untouched
        assert handed == []  # no body is complete
    finally:
        gate.stop()
        for server_side, client_side in pairs:
            server_side.close()
            client_side.close()
