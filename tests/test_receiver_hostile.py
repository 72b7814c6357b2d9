"""The receiver tried as an attacker would: each row of issue 9's table, sent to a real
``iptvsync serve`` on loopback, with the answer the receiver must give.

Slow clients (slowloris), chunked floods, bodies that broke the parser, odd encodings, the key
smuggled past redaction, sources outside ``allowed_ips``, a full disk, and the silent failures
``status`` must name. Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from support.install import CHAVE, fixture_body, running, wait_for
from support.receiver import (
    FORM,
    JSON,
    PATH,
    WAIT_S,
    install_with,
    logged_refusals,
    sale_body,
    self_signed_certificate,
    stream_until_answered,
)
from support.smtp import smtp_server

from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.postback import parse

REFUSED = {400, 403, 404, 405, 408, 413, 415, 503}


# --- helpers --------------------------------------------------------------------------------

def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the receiver from ``source`` (any 127.x.y.z is loopback on Linux)."""
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S, source_address=(source, 0))


def raw_request(port: int, data: bytes, *, source: str = "127.0.0.1") -> bytes:
    """Send ``data`` as is, half-close, and return everything the receiver answers."""
    with connect(port, source) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def head(content_type: str = FORM, **headers: str) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads")


def rejected_lines(receiver) -> list[str]:
    return [line for line in receiver.log().splitlines() if " rejected " in line]


def count(receiver, status: int, reason: str) -> int:
    return sum(r["count"] for r in receiver.rejections() if (r["status"], r["reason"]) == (status, reason))


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iptvsync", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=WAIT_S)


def payload_with(**changes) -> dict:
    payload = json.loads(fixture_body("approved-first-charge.json"))
    for dotted, value in changes.items():
        block, _, key = dotted.partition("__")
        if value is None:
            payload[block].pop(key, None)
        else:
            payload[block][key] = value
    return payload


def no_traceback(receiver) -> None:
    text = receiver.log()
    assert "Traceback" not in text and " 500 " not in text, text[-2000:]


# --- slow clients -----------------------------------------------------------------------------

class Trickle:
    """Slowloris: ``per_source`` connections from each of ``sources``, each sending a request
    head one byte a second, from one thread, for at most ``seconds``."""

    def __init__(self, port: int, sources: list[str], per_source: int, seconds: float):
        self.socks = [connect(port, source) for source in sources for _ in range(per_source)]
        self.text = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * 64}\r\n".encode()
        self.stop = threading.Event()
        self.seconds = seconds
        self.sent = 0  # bytes of the head each connection has sent
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline and self.sent < len(self.text):
            for sock in self.socks:
                try:
                    sock.send(self.text[self.sent:self.sent + 1])
                except OSError:
                    pass  # cut by the receiver: that is the point
            self.sent += 1
            self.stop.wait(1.0)

    def answers(self) -> list[bytes]:
        out = []
        for sock in self.socks:
            sock.settimeout(WAIT_S)
            try:
                out.append(sock.recv(4096))
            except OSError:
                out.append(b"")
        return out

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()


def test_slowloris_150_slow_connections_do_not_delay_a_real_postback(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="header_timeout_s = 6\n"))
    sources = [f"127.0.0.{n}" for n in range(2, 12)]  # 10 addresses x 15: under the per-address cap
    slow = Trickle(receiver.port, sources, per_source=15, seconds=20)
    try:
        wait_for(lambda: slow.sent >= 3, "every slow connection to have begun its head", 10)
        started = time.monotonic()
        response = receiver.post(sale_body("61000001"), timeout=5)
        elapsed = time.monotonic() - started
        assert (response.status_code, response.json()["result"]) == (200, "stored")
        assert elapsed < 5.0
        assert receiver.get("/healthz", timeout=5).status_code == 200
        # the head deadline is total: trickling bytes does not keep a connection alive
        answers = slow.answers()
    finally:
        slow.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:20] for a in answers}
    wait_for(lambda: count(receiver, 408, "request not received in time") == 150, "150 counted 408s")
    assert receiver.stop() == 0  # by then the refusals not logged one by one are summed up
    assert logged_refusals(receiver.log(), 408, "request not received in time") == 150
    no_traceback(receiver)


def test_connections_past_the_per_address_cap_are_refused_and_counted(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="max_connections_per_ip = 8\nheader_timeout_s = 60\n"))
    held = [connect(receiver.port, "127.0.0.20") for _ in range(12)]
    try:
        wait_for(lambda: count(receiver, 503, "too many connections from this address") == 4, "4 refusals counted")
        closed = 0
        for sock in held:
            sock.settimeout(0.5)
            try:
                closed += sock.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed == 4
        response = receiver.post(sale_body("62000001"))  # another address is not affected
        assert response.status_code == 200
    finally:
        for sock in held:
            sock.close()
    def healthz_from_the_capped_address() -> bool:  # closed connections are given back (once seen closed)
        try:
            answer = raw_request(receiver.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                 source="127.0.0.20")
        except OSError:  # still refused (reset): not given back yet
            return False
        return answer.startswith(b"HTTP/1.1 200 ")

    wait_for(healthz_from_the_capped_address, "the address's connections to be given back", 20)


def test_a_tls_client_that_never_shakes_hands_does_not_stall_the_others(start, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    receiver = start(install_with(tmp_path, receiver='certfile = "../cert.pem"\nkeyfile = "../key.pem"\n'
                                                     "header_timeout_s = 30\n"))
    mute = [connect(receiver.port, f"127.0.0.{n}") for n in (30, 31, 32) for _ in range(10)]
    try:
        started = time.monotonic()
        response = receiver.post(sale_body("63000001"), verify=str(cert), timeout=5)
        assert response.status_code == 200 and time.monotonic() - started < 5.0
    finally:
        for sock in mute:
            sock.close()


def test_a_mute_tls_client_is_cut_at_the_head_deadline_and_counted(start, tmp_path):
    cert, _key = self_signed_certificate(tmp_path)
    receiver = start(install_with(tmp_path, receiver='certfile = "../cert.pem"\nkeyfile = "../key.pem"\n'
                                                     "header_timeout_s = 1\n"))
    with connect(receiver.port) as mute:  # no ClientHello, ever
        started = time.monotonic()
        mute.settimeout(10)
        try:
            while mute.recv(100):  # at most a TLS alert, then the receiver closes...
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 5  # ...at the deadline, not at a socket timeout
    wait_for(lambda: count(receiver, 408, "request not received in time") == 1, "the 408 to be counted")
    assert receiver.post(sale_body("63000002"), verify=str(cert)).status_code == 200
    no_traceback(receiver)


# --- floods and bodies that broke the parser ---------------------------------------------------

def _chunked_flood(port: int, *, declared: int, streams: int, limit_s: float = 10.0) -> list[int]:
    """``streams`` connections, each declaring a chunk of ``declared`` bytes and streaming it
    in 1 MiB writes until the receiver answers or ``limit_s`` passes; the statuses answered."""
    statuses = []

    def one():
        with connect(port) as sock:
            sock.sendall(head(Transfer_Encoding="chunked") + f"{declared:x}\r\n".encode())
            statuses.append(status_of(stream_until_answered(sock, declared, limit_s)))

    workers = [threading.Thread(target=one) for _ in range(streams)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses


@pytest.mark.parametrize("allowed, status, reason", [
    ("", 413, "body too large"),
    ('allowed_ips = ["10.0.0.0/8"]\n', 403, "source address not allowed"),
])
def test_a_chunked_flood_is_refused_while_streaming_and_memory_stays_flat(start, tmp_path, allowed, status, reason):
    receiver = start(install_with(tmp_path, receiver=allowed))
    assert receiver.post(sale_body("64000001")).status_code == (200 if not allowed else 403)  # warm
    before = rss_kb(receiver.proc.pid)
    peak = [before]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak.append(rss_kb(receiver.proc.pid))
            sampling.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = _chunked_flood(receiver.port, declared=256 << 20, streams=4)
        statuses += _chunked_flood(receiver.port, declared=64 << 20, streams=2)
    finally:
        sampling.set()
        sampler.join()
    assert statuses == [status] * 6
    assert (max(peak) - before) < 100 * 1024, f"RSS grew {(max(peak) - before) // 1024} MB"
    wait_for(lambda: count(receiver, status, reason) >= 6, "the refusals to be counted")
    no_traceback(receiver)


def test_a_declared_content_length_over_the_limit_is_413_before_reading(receiver):
    answer = raw_request(receiver.port, head(Content_Length=str(64 << 20)))  # and no body at all
    assert status_of(answer) == 413
    wait_for(lambda: count(receiver, 413, "body too large") == 1, "the 413 to be counted")


def nested_multipart(depth: int) -> bytes:
    """A multipart request whose parts nest ``depth`` deep, the key in the innermost one."""
    body = b""
    for level in range(depth):
        body += f"--b{level}\r\nContent-Type: multipart/mixed; boundary=b{level + 1}\r\n\r\n".encode()
    body += b"--b%d\r\nContent-Disposition: form-data; name=\"chave_unica\"\r\n\r\n%s\r\n" % (depth, CHAVE.encode())
    return head("multipart/form-data; boundary=b0", Content_Length=str(len(body))) + body


@pytest.mark.parametrize("request_bytes, status, reason", [
    (head(Content_Length="3") + b"0=a", 403, "chave_unica missing or wrong"),  # a form without the key
    (nested_multipart(1000), 400, "malformed body"),
    (head(Transfer_Encoding="chunked") + b"zz\r\nabc\r\n0\r\n\r\n", 400, "bad chunked framing"),
    (head(Transfer_Encoding="chunked") + b"3\r\nabcXY0\r\n\r\n", 400, "bad chunked framing"),
    (head(Transfer_Encoding="chunked") + b"3\r\nab", 400, "incomplete body"),
    (head(Content_Length="100") + b"chave_unica=", 400, "incomplete body"),
    (b"GARBAGE\r\n\r\n", 400, "malformed request"),
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed request"),
    (head(Content_Length="abc"), 400, "malformed request"),
    (head(Content_Length="-1") + b"x" * 1000, 400, "bad content-length"),
    (head(Transfer_Encoding="gzip, chunked") + b"0\r\n\r\n", 501, "unsupported transfer encoding"),
], ids=["0=a", "multipart-1000-deep", "chunk-size-not-hex", "chunk-without-crlf", "chunked-cut",
        "content-length-cut", "bad-request-line", "bad-header", "bad-content-length", "negative-content-length",
        "unknown-coding"])
def test_a_body_that_broke_the_parser_gets_a_deliberate_status_one_log_line_and_a_count(
        receiver, request_bytes, status, reason):
    answer = raw_request(receiver.port, request_bytes)

    assert status_of(answer) == status
    wait_for(lambda: count(receiver, status, reason) == 1, f"the {status} to be counted")
    [line] = rejected_lines(receiver)
    assert line.endswith(f"rejected {status} from 127.0.0.1: {reason}")
    assert [access[3] for access in receiver.access_lines()] == [status]
    assert receiver.inbox() == []
    no_traceback(receiver)


def test_0_eq_a_with_the_key_is_stored_as_unclassified(receiver):
    response = receiver.post(b"0=a&chave_unica=" + CHAVE.encode())
    assert response.status_code == 200
    [row] = receiver.inbox()
    assert (row["kind"], row["status"]) == ("unclassified", "ignored")


# --- encodings and redaction --------------------------------------------------------------------

def test_latin_1_bytes_without_a_charset_are_stored_raw(receiver):
    body = sale_body("65000001").replace(b"comprador%5Bnome%5D=Maria", b"comprador%5Bnome%5D=Jos%E9+Maria")
    assert b"Jos%E9" in body

    response = receiver.post(body, FORM)  # no charset declared
    assert (response.status_code, response.json()["result"]) == (200, "stored")
    [row] = receiver.inbox()
    assert row["body"] == body.replace(CHAVE.encode(), b"")  # the raw bytes, the key blanked
    assert row["sale_code"] == "65000001"


def _escaped_key_bodies() -> dict[str, tuple[bytes, str]]:
    one_letter = CHAVE.index("a")
    percent = CHAVE[:one_letter] + "%61" + CHAVE[one_letter + 1:]
    unicode_escape = CHAVE[:one_letter] + "\\u0061" + CHAVE[one_letter + 1:]
    payload = json.loads(fixture_body("approved-first-charge.json"))
    form = sale_body("66000001")
    return {
        "form-percent-encoded-letter": (form.replace(b"chave_unica=" + CHAVE.encode(),
                                                     b"chave_unica=" + percent.encode()), FORM),
        "form-lower-case-hex": (form.replace(b"chave_unica=" + CHAVE.encode(),
                                             b"chave_unica=" + "".join(f"%{ord(c):02x}" for c in CHAVE).encode()),
                                FORM),
        "json-u-escape": (json.dumps(payload).replace(CHAVE, unicode_escape).encode(), JSON),
        "json-field-u-escape": (b"&".join(
            field.replace(CHAVE.encode(), unicode_escape.replace("\\", "%5C").encode())
            if field.startswith(b"json=") else field for field in build_form(payload).split(b"&")), FORM),
    }


@pytest.mark.parametrize("name", sorted(_escaped_key_bodies()))
def test_the_key_however_encoded_is_redacted_in_the_store_and_in_inbox_show(receiver, name):
    body, content_type = _escaped_key_bodies()[name]
    assert parse(body, content_type)[1].chave_unica == CHAVE

    response = receiver.post(body, content_type)
    assert response.status_code == 200
    [row] = receiver.inbox()
    stored = parse(row["body"], row["content_type"])
    assert not stored[1].chave_unica
    assert CHAVE not in json.dumps(stored[0], ensure_ascii=False)
    for args in (["inbox", "show", str(row["id"]), "--json"], ["inbox", "show", str(row["id"])]):
        shown = cli(receiver.config, *args)
        assert shown.returncode == 0, shown.stderr
        assert CHAVE not in shown.stdout and "%61" + CHAVE[11:] not in shown.stdout
        assert "u0061" + CHAVE[11:] not in shown.stdout


# --- allowed_ips ------------------------------------------------------------------------------------

def test_a_source_outside_allowed_ips_is_refused_before_its_body_is_read(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver='allowed_ips = ["10.0.0.0/8"]\n'))
    with connect(receiver.port) as sock:  # announces a body and never sends it
        sock.sendall(head(Content_Length="5000"))
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 403 ")

    right = sale_body("67000001")
    wrong = right.replace(CHAVE.encode(), b"f" * len(CHAVE))
    answers = [receiver.post(body) for body in (right, wrong)]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].content == answers[1].content == b'{"error": "source address not allowed"}'
    wait_for(lambda: count(receiver, 403, "source address not allowed") == 3, "three counted refusals")
    assert receiver.inbox() == []


# --- status: what nobody would otherwise notice ------------------------------------------------------

def _process(config: Path) -> None:
    result = cli(config, "process")
    assert result.returncode == 0, result.stderr


def _status(config: Path) -> tuple[int, dict]:
    result = cli(config, "status", "--json")
    return result.returncode, json.loads(result.stdout)


def test_status_is_unhealthy_for_a_paid_subscription_without_an_email(receiver):
    body = build_form(payload_with(comprador__email=None))
    assert receiver.post(body).status_code == 200
    _process(receiver.config)

    code, report = _status(receiver.config)
    assert code == 1
    [problem] = [p for p in report["problems"] if "without a deliverable email" in p]
    assert ": 1;" in problem and "iptvsync subs show" in problem
    assert report["facts"]["subs_paid_without_email"] == 1


def test_status_is_unhealthy_for_a_postback_nobody_could_classify(receiver):
    payload = json.loads(fixture_body("approved-first-charge.json"))
    for key in ("tipoEvento", "postback_evento", "codigo_status", "json"):
        payload.pop(key, None)
    payload["venda"].pop("codigo_status", None)
    payload["venda"]["status"] = "Aprovadíssima"  # a renamed label
    assert receiver.post(build_form(payload, json_field=False)).status_code == 200
    [row] = receiver.inbox()
    assert row["kind"] == "unclassified"

    code, report = _status(receiver.config)
    assert code == 1
    [problem] = [p for p in report["problems"] if "no rule could classify" in p]
    assert f": {row['id']};" in problem and "iptvsync inbox show" in problem


def test_status_is_unhealthy_for_a_spike_of_refusals_on_the_postback_path(receiver):
    wrong = sale_body("68000001").replace(CHAVE.encode(), b"f" * len(CHAVE))
    session = requests.Session()
    for _ in range(25):
        assert session.post(receiver.url + PATH, data=wrong, headers={"Content-Type": FORM},
                            timeout=WAIT_S).status_code == 403
    for _ in range(30):  # guesses at other paths are not a spike: they never had the URL
        session.post(receiver.url + "/guess", data=b"x", timeout=WAIT_S)
    # Monetizze's own form with another key: counted under its own reason (issue 18)
    reason = "chave_unica wrong on a Monetizze postback"
    wait_for(lambda: count(receiver, 403, reason) == 25, "25 counted 403s")
    wait_for(lambda: count(receiver, 404, "unknown path") == 30, "30 counted 404s")

    code, report = _status(receiver.config)
    assert code == 1
    [problem] = [p for p in report["problems"] if "refused in the last hour" in p]
    assert problem.startswith("25 requests to the postback URL") and f"25× 403 {reason}" in problem
    assert report["facts"]["rejections_by_reason_today"] == {f"403 {reason}": 25, "404 unknown path": 30}


# --- email ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, email", [
    ("José " * 4000, "maria@example.com"),  # 20,000 characters
    ("M" * 20_000, "maria@example.com"),  # and no space to fold at
    ("Maria", '"maria silva"@example.com'),  # a quoted local part
])
def test_the_email_goes_out_for_a_huge_name_or_a_quoted_local_part(start, tmp_path, name, email):
    with smtp_server() as server:
        config = install_with(tmp_path, extra="")
        text = config.read_text().replace('backend = "maildir"', f'backend = "smtp"\nsmtp_host = "127.0.0.1"\n'
                                          f'smtp_port = {server.port}\nsmtp_security = "none"\ntimeout_s = 5')
        config.write_text(text)
        receiver = start(config)
        body = build_form(payload_with(comprador__nome=name, comprador__email=email))
        assert receiver.post(body).status_code == 200
        _process(config)
        [received] = server.received
    assert received.rcpt_tos == [email.lower()]
    message = received.message()
    assert max(len(line) for line in received.data.splitlines()) <= 998
    assert len(str(message["To"])) < 120
    assert email.lower() in str(message["To"]).lower() or email.lower().replace('"', "") in str(message["To"])
    code, report = _status(config)
    assert not [p for p in report["problems"] if "email" in p]


# --- /healthz and the writer -----------------------------------------------------------------------

WRITER_PID = "ledger writer running (pid "


def _writer_pid(receiver) -> int:
    return int(receiver.log().rsplit(WRITER_PID, 1)[1].split(")", 1)[0])


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
def test_healthz_is_503_while_the_ledger_cannot_commit(receiver):
    assert receiver.get("/healthz").status_code == 200
    pid = _writer_pid(receiver)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))  # the writer's files cannot grow: a full disk
    try:
        # answers are cached for a second (PROBE_EVERY_S): the first probe after that one fails
        # (a Response is falsy when not ok: the condition hands it back in a list)
        [unhealthy] = wait_for(lambda: [r] if (r := receiver.get("/healthz")).status_code == 503 else None,
                               "/healthz to see the ledger cannot commit", 10)
        assert unhealthy.json()["error"].startswith("ledger cannot commit")
        assert receiver.post(sale_body("69000001")).status_code == 503
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
    wait_for(lambda: receiver.get("/healthz").status_code == 200, "/healthz to see commits again", 10)
    assert receiver.post(sale_body("69000001")).status_code == 200


def test_writer_socket_folders_of_killed_receivers_are_removed(start, install, monkeypatch):
    import tempfile

    socket_parent = tempfile.mkdtemp(prefix="iw")  # short: a Unix socket path has ~100 bytes
    monkeypatch.setenv("TMPDIR", socket_parent)
    first = start(install)
    writer = _writer_pid(first)
    [left] = list(Path(socket_parent).glob("iptvsync-writer-*"))
    os.kill(writer, signal.SIGKILL)  # both at once, as a SIGKILL to the process group does
    first.stop(signal.SIGKILL)
    wait_for(lambda: not running(writer), "the writer to die")
    assert left.exists()

    second = start(install)
    assert not left.exists()
    assert [p.name for p in Path(socket_parent).glob("iptvsync-writer-*")] != [left.name]
    assert "removed a stale writer socket directory" in second.log()
    assert second.post(sale_body("70000001")).status_code == 200
    second.stop()
    assert list(Path(socket_parent).glob("iptvsync-writer-*")) == []
    os.rmdir(socket_parent)


def test_odd_request_lines_get_a_deliberate_answer_never_a_traceback(receiver):
    """A TLS hello on the plain port, an unknown HTTP version, blank lines: deliberate answers."""
    for request_bytes in (b"\x16\x03\x01\x00\x05hello", b"POST / HTTP/9.9\r\n\r\n", b"\r\n\r\n\r\n"):
        answer = raw_request(receiver.port, request_bytes)
        assert status_of(answer) in REFUSED | {0, 505}
    no_traceback(receiver)


def test_a_true_internal_fault_is_a_500_with_the_traceback_in_the_log_only(cfg, caplog):
    """The one 500 left: a bug on our side (here the writer raises what it never should)."""
    import io

    from iptvsync.receiver.app import ReceiverApp

    class BrokenWriter:
        rejected: list = []

        def store(self, row):
            raise RuntimeError("a bug")

        def reject(self, status, reason, remote, *, on_path=False):
            self.rejected.append((status, reason))

    app = ReceiverApp(cfg, BrokenWriter())
    body = sale_body("71000001")
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": PATH, "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": FORM,
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    answered = []
    with caplog.at_level("INFO"):
        payload = b"".join(app(environ, lambda status, headers: answered.append(status)))

    assert answered == ["500 Internal Server Error"]
    assert payload == b'{"error": "internal error"}'  # no traceback, no detail on the wire
    assert BrokenWriter.rejected == [(500, "internal error")]
    assert "Traceback" in caplog.text and "RuntimeError" in caplog.text
