"""The receiver over real HTTP(S) on loopback, against real ``iptvsync serve`` processes.

Every answer it gives is checked together with the trace it leaves (an inbox row, or a counted
rejection, and a log line) and with the promise that secrets stay out of logs and stored bodies.
Then the process-level promises: SIGTERM finishes in-flight requests, every 200 survives SIGKILL,
and two receivers can share one ledger.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from support.install import CHAVE, FIXTURES, fixture_body, running, wait_for, write_install
from support.receiver import (
    FORM,
    JSON,
    PATH,
    WAIT_S,
    Receiver,
    assert_no_secrets,
    assert_rejected,
    install_with,
    query,
    sale_body,
    self_signed_certificate,
)

from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.postback import from_facts, parse

SAMPLES = sorted(p.name for p in (FIXTURES / "monetizze").iterdir() if p.suffix in (".form", ".json"))
PRODUCT_KEY = "fedcba9876543210fedcba9876543210"  # produto[chave] in the samples


# --- 200: stored ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SAMPLES)
def test_each_sample_postback_is_stored_with_its_parsed_fields_and_no_secret(start, tmp_path, name):
    body = fixture_body(name)
    content_type = FORM if name.endswith(".form") else JSON
    expected = parse(body, content_type)[1]
    chave = expected.chave_unica  # CHAVE, but the annotated template carries its own
    receiver = start(write_install(tmp_path / "install", env={"MONETIZZE_CHAVE_UNICA": chave}))
    response = receiver.post(body, content_type)

    assert response.status_code == 200
    assert response.json()["result"] == "stored"
    [row] = receiver.inbox()
    assert row["id"] == response.json()["id"]
    assert {k: row[k] for k in ("event", "kind", "sale_code", "parcela", "buyer_email", "paid_at", "dedupe_key")} == {
        "event": expected.event, "kind": expected.kind, "sale_code": expected.sale_code,
        "parcela": expected.parcela, "buyer_email": expected.buyer_email, "paid_at": expected.paid_at,
        "dedupe_key": expected.dedupe_key}
    assert row["status"] == ("ignored" if expected.kind == "ignored" else "pending")
    assert (row["source"], row["remote_addr"], row["content_type"], row["times_seen"]) == (
        "postback", "127.0.0.1", content_type, 1)
    # the raw body, byte for byte, with only the chave_unica value blanked
    assert row["body"] == body.replace(chave.encode(), b"")
    assert parse(row["body"], content_type)[1].chave_unica is None
    # a pending one carries what the parser makes of the stored bytes, for the apply stage;
    # no secret in it either (produto[chave] left out too)
    facts = [r["facts"] for r in query(receiver.ledger, "SELECT facts FROM inbox_facts WHERE inbox_id = ?",
                                         (row["id"],))]
    if row["status"] == "pending":
        assert from_facts(facts[0]) == replace(parse(row["body"], content_type)[1], product_key=None)
        assert chave not in facts[0] and PRODUCT_KEY not in facts[0]
    else:
        assert facts == []
    assert receiver.access_lines() == [("127.0.0.1", "POST", "<postback>", 200)]
    assert_no_secrets(receiver.log(), chave)


@pytest.mark.parametrize("content_type", [FORM, JSON])
def test_a_first_charge_is_stored_with_the_fields_the_engine_needs(receiver, content_type):
    extension = ".form" if content_type == FORM else ".json"
    assert receiver.post(fixture_body("approved-first-charge" + extension), content_type).status_code == 200

    [row] = receiver.inbox()
    assert {k: row[k] for k in ("event", "kind", "sale_code", "parcela", "buyer_email", "paid_at", "status")} == {
        "event": 2, "kind": "approved", "sale_code": "51000001", "parcela": 1,
        "buyer_email": "maria@example.com", "paid_at": "2026-11-20T17:37:57Z", "status": "pending"}


@pytest.mark.parametrize("marker", ["X-Wing", "no sale code nor buyer"])
def test_the_monetizze_test_button_is_answered_200_and_stored_as_ignored(receiver, marker):
    payload = json.loads(fixture_body("approved-first-charge.json"))
    if marker == "X-Wing":
        payload["produto"]["nome"] = "X-Wing"
    else:  # renamed sample product: still nobody's purchase
        payload["produto"]["nome"] = "Produto exemplo"
        payload["venda"]["codigo"] = payload["codigo_venda"] = "0"
        payload["comprador"]["email"] = ""
    response = receiver.post(build_form(payload, json_field=False))  # the button sends no `json`

    assert response.status_code == 200
    assert response.json()["result"] == "stored"
    [row] = receiver.inbox()
    assert (row["is_test"], row["status"], row["reason"]) == (1, "ignored", "Monetizze test postback")
    assert row["dedupe_key"].startswith("test:")
    assert CHAVE.encode() not in row["body"]
    assert_no_secrets(receiver.log())


def test_a_duplicate_is_answered_200_and_counted_on_the_same_row(receiver):
    body = fixture_body("approved-first-charge.form")
    first, second = receiver.post(body), receiver.post(body)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["result"] == "stored"
    assert second.json() == {"result": "duplicate", "id": first.json()["id"]}
    [row] = receiver.inbox()
    assert row["times_seen"] == 2
    assert receiver.access_lines() == [("127.0.0.1", "POST", "<postback>", 200)] * 2
    assert "duplicate" in receiver.log().splitlines()[-1]


def test_health_check(receiver):
    response = receiver.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"result": "ok"})
    assert receiver.access_lines() == [("127.0.0.1", "GET", "/healthz", 200)]
    assert receiver.inbox() == [] and receiver.rejections() == []


# --- 4xx: rejected and counted ---------------------------------------------------------------

def test_a_body_over_max_body_bytes_is_413(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="max_body_bytes = 4096\n"))
    body = fixture_body("approved-first-charge.form")  # 5 kB, with a Content-Length
    assert len(body) > 4096

    assert_rejected(receiver, receiver.post(body), 413, "body too large")


def test_a_chunked_body_over_max_body_bytes_is_413(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="max_body_bytes = 4096\n"))
    body = fixture_body("approved-first-charge.form")
    response = receiver.post(iter([body[:3000], body[3000:]]))  # no length: Transfer-Encoding: chunked

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert_rejected(receiver, response, 413, "body too large")


def test_a_chunked_body_within_the_limit_is_stored(receiver):
    body = fixture_body("approved-first-charge.form")
    response = receiver.post(iter([body[:3000], body[3000:]]))

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 200
    assert receiver.inbox()[0]["body"] == body.replace(CHAVE.encode(), b"")


def test_text_plain_is_415(receiver):
    response = receiver.post(fixture_body("approved-first-charge.form"), "text/plain")
    assert_rejected(receiver, response, 415, "unsupported content type")


@pytest.mark.parametrize("body, content_type", [
    (b'{"venda": {"codigo": ', JSON),  # truncated JSON
    (b"\xff\xfe\x00\x80 garbage \xc3", FORM),  # not even text
    (b"", FORM),
], ids=["invalid-json", "garbage", "empty"])
def test_an_unreadable_body_is_400(receiver, body, content_type):
    assert_rejected(receiver, receiver.post(body, content_type), 400, "malformed body")


def test_a_postback_without_chave_unica_is_403(receiver):
    payload = json.loads(fixture_body("approved-first-charge.json"))
    del payload["chave_unica"]
    assert_rejected(receiver, receiver.post(json.dumps(payload), JSON), 403, "chave_unica missing or wrong")


def test_a_postback_with_a_wrong_chave_unica_is_403(receiver):
    wrong = "f" * len(CHAVE)
    body = fixture_body("approved-first-charge.form").replace(CHAVE.encode(), wrong.encode())

    # Monetizze's own form with a key that is not ours: counted apart, `status` fails on one (issue 18)
    assert_rejected(receiver, receiver.post(body), 403, "chave_unica wrong on a Monetizze postback")
    assert_no_secrets(receiver.log(), wrong)  # not even the wrong key is logged


@pytest.mark.parametrize("configured_key, status", [(PRODUCT_KEY, 200), ("0" * 32, 403)])
def test_produto_chave_is_checked_when_check_product_key_is_on(start, tmp_path, configured_key, status):
    config = install_with(tmp_path, product=f'key = "{configured_key}"\n',
                          extra="\n[monetizze]\ncheck_product_key = true\n")
    receiver = start(config)
    response = receiver.post(fixture_body("approved-first-charge.form"))

    if status == 403:
        assert_rejected(receiver, response, 403, "produto[chave] missing or wrong")
    else:
        assert response.status_code == 200
        assert len(receiver.inbox()) == 1
    assert_no_secrets(receiver.log(), PRODUCT_KEY, configured_key)


@pytest.mark.parametrize("allowed, status", [("10.0.0.0/8", 403), ("127.0.0.0/8", 200)])
def test_allowed_ips(start, tmp_path, allowed, status):
    receiver = start(install_with(tmp_path, receiver=f'allowed_ips = ["{allowed}"]\n'))
    response = receiver.post(fixture_body("approved-first-charge.form"))

    if status == 403:
        assert_rejected(receiver, response, 403, "source address not allowed")
    else:
        assert response.status_code == 200
        assert receiver.inbox()[0]["remote_addr"] == "127.0.0.1"


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver='trusted_proxies = ["127.0.0.1/32"]\n'
                                                     'allowed_ips = ["203.0.113.0/24"]\n'))
    # the client's own claim comes first; our proxy appended the address it saw
    response = receiver.post(fixture_body("approved-first-charge.form"),
                             headers={"X-Forwarded-For": "10.6.6.6, 203.0.113.7"})

    assert response.status_code == 200
    assert receiver.inbox()[0]["remote_addr"] == "203.0.113.7"
    assert receiver.access_lines() == [("203.0.113.7", "POST", "<postback>", 200)]
    assert_no_secrets(receiver.log())


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver='trusted_proxies = ["192.0.2.10/32"]\n'
                                                     'allowed_ips = ["203.0.113.0/24"]\n'))
    response = receiver.post(fixture_body("approved-first-charge.form"),
                             headers={"X-Forwarded-For": "203.0.113.7"})

    assert_rejected(receiver, response, 403, "source address not allowed", remote="127.0.0.1")


def test_an_unknown_path_is_404_and_not_logged(receiver):
    response = receiver.post(fixture_body("approved-first-charge.form"), path="/monetizze/postback/guess")

    assert_rejected(receiver, response, 404, "unknown path")
    assert receiver.access_lines() == [("127.0.0.1", "POST", "<other>", 404)]
    assert "guess" not in receiver.log()


def test_get_on_the_postback_path_is_405(receiver):
    assert_rejected(receiver, receiver.get(PATH), 405, "method not allowed")


def test_rejections_are_counted_not_stored_one_row_per_day_status_and_reason(receiver):
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=WAIT_S)  # one keep-alive connection
    wrong_key = json.dumps({"chave_unica": "wrong", "venda": {"codigo": "1"}})
    bad_requests = [("POST", "/nope", b"x", FORM), ("GET", PATH, None, None),
                    ("POST", PATH, b"hello", "text/plain"), ("POST", PATH, wrong_key.encode(), JSON)]
    statuses = Counter()
    for method, path, body, content_type in itertools.islice(itertools.cycle(bad_requests), 1000):
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        response.read()
        statuses[response.status] += 1
    conn.close()

    assert statuses == {404: 250, 405: 250, 415: 250, 403: 250}
    wait_for(lambda: sum(r["count"] for r in receiver.rejections()) == 1000, "all 1000 to be counted")
    rows = receiver.rejections()
    assert len(rows) <= 8  # 4 reasons, on at most two days (if the test straddles midnight UTC)
    assert {(r["status"], r["reason"]) for r in rows} == {
        (404, "unknown path"), (405, "method not allowed"), (415, "unsupported content type"),
        (403, "chave_unica missing or wrong")}
    assert receiver.inbox() == []


# --- 503: the ledger cannot be written ------------------------------------------------------

def test_a_locked_ledger_gets_503_never_200_and_a_retry_after_release_is_stored(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="ledger_timeout_s = 1\n"))
    body = fixture_body("approved-first-charge.form")
    holder = sqlite3.connect(receiver.ledger, isolation_level=None, timeout=WAIT_S)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock past the receiver's patience
    try:
        responses = [receiver.post(body), receiver.post(sale_body("52000002"))]
        assert [r.status_code for r in responses] == [503, 503]
        assert responses[0].json() == {"error": "ledger unavailable, retry later"}
        assert "ledger write failed: " in receiver.log()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert receiver.inbox() == []  # a 503 left nothing behind

    retry = receiver.post(body)
    assert retry.status_code == 200
    assert retry.json()["result"] == "stored"
    [row] = receiver.inbox()
    assert row["times_seen"] == 1
    assert [line[3] for line in receiver.access_lines()] == [503, 503, 200]
    assert_no_secrets(receiver.log())


# --- TLS ------------------------------------------------------------------------------------

def test_simulate_against_a_self_signed_receiver_suggests_insecure(start, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    config = install_with(tmp_path, receiver='certfile = "../cert.pem"\nkeyfile = "../key.pem"\n')
    receiver = start(config)

    def simulate(*extra):
        return subprocess.run([sys.executable, "-m", "iptvsync", "--config", str(config), "simulate", "purchase",
                               "--url", receiver.url + PATH, *extra], capture_output=True, text=True,
                              timeout=WAIT_S)

    refused = simulate()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "--insecure" in refused.stderr
    accepted = simulate("--insecure")
    assert accepted.returncode == 0, accepted.stderr
    assert "HTTP 200" in accepted.stdout and "Warning" not in accepted.stderr, accepted.stderr


def test_simulating_an_unconfigured_product_says_so_and_posts_nothing(receiver, install, ledger):
    """A postback for a product without [products.<code>] would only ever be unmapped: no "HTTP 200"."""
    result = subprocess.run([sys.executable, "-m", "iptvsync", "--config", str(install), "simulate", "purchase",
                             "--product", "999", "--url", receiver.url + PATH], capture_output=True, text=True,
                            timeout=WAIT_S)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr == (f"error: product 999 is not configured: add a [products.999] section to {install}"
                             " (configured: 145388)\n")
    assert ledger.one("SELECT COUNT(*) AS n FROM inbox")["n"] == 0


@pytest.mark.parametrize("via", ["config", "options"])
def test_tls(start, tmp_path, via):
    cert, key = self_signed_certificate(tmp_path)
    if via == "config":  # relative paths are relative to the config file
        config = install_with(tmp_path, receiver='certfile = "../cert.pem"\nkeyfile = "../key.pem"\n')
        receiver = start(config)
    else:
        receiver = start(install_with(tmp_path), "--certfile", str(cert), "--keyfile", str(key))
    assert receiver.url.startswith("https://127.0.0.1:")

    response = receiver.post(fixture_body("approved-first-charge.form"), verify=str(cert))
    assert (response.status_code, response.json()["result"]) == (200, "stored")
    assert len(receiver.inbox()) == 1

    with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the certificate
        receiver.post(fixture_body("approved-first-charge.form"))
    plain_url = receiver.url.replace("https://", "http://") + PATH
    with pytest.raises(requests.ConnectionError):  # plain HTTP on the TLS port: dropped
        requests.post(plain_url, data=fixture_body("renewal-second-charge.form"), headers={"Content-Type": FORM},
                      timeout=WAIT_S)
    assert len(receiver.inbox()) == 1
    assert_no_secrets(receiver.log())


# --- process lifecycle ------------------------------------------------------------------------

def _server_has_read_everything(client: socket.socket) -> bool:
    """True once the server end of ``client``'s connection has no unread bytes, i.e. a worker
    thread is inside the request (Linux: the socket's receive queue in /proc/net/tcp)."""
    client_port, server_port = client.getsockname()[1], client.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)) == (server_port, client_port):
            return int(queues.split(":")[1], 16) == 0
    return False


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(receiver):
    body = fixture_body("approved-first-charge.form")
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    client = socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT_S)
    client.sendall(head + body[:2000])  # a slow client: half the body so far
    wait_for(lambda: _server_has_read_everything(client), "a worker to be reading the request")

    receiver.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: _refuses_connections(receiver.port), "the receiver to stop accepting connections")
    client.sendall(body[2000:])  # ...and the rest, after SIGTERM
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()

    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["result"] == "stored"
    assert receiver.proc.wait(timeout=WAIT_S) == 0
    assert len(receiver.inbox()) == 1
    assert "signal 15: finishing in-flight requests" in receiver.log()


def test_access_log_has_one_line_per_request_and_no_secrets(start, install):
    receiver = start(install)
    body = fixture_body("approved-first-charge.form")
    wrong_key = body.replace(CHAVE.encode(), b"f" * len(CHAVE))
    answers = [receiver.get("/healthz"), receiver.post(body), receiver.post(body), receiver.post(wrong_key),
               receiver.get(PATH), receiver.post(body, path="/other"), receiver.post(body, "text/plain"),
               receiver.post(fixture_body("refunded.json"), JSON)]
    assert receiver.stop() == 0

    assert [a.status_code for a in answers] == [200, 200, 200, 403, 405, 404, 415, 200]
    assert receiver.access_lines() == [
        ("127.0.0.1", "GET", "/healthz", 200), ("127.0.0.1", "POST", "<postback>", 200),
        ("127.0.0.1", "POST", "<postback>", 200), ("127.0.0.1", "POST", "<postback>", 403),
        ("127.0.0.1", "GET", "<postback>", 405), ("127.0.0.1", "POST", "<other>", 404),
        ("127.0.0.1", "POST", "<postback>", 415), ("127.0.0.1", "POST", "<postback>", 200)]
    assert len([line for line in receiver.log().splitlines() if "iptvsync.access" in line]) == len(answers)
    assert_no_secrets(receiver.log(), "f" * len(CHAVE), PRODUCT_KEY)


# --- durability ------------------------------------------------------------------------------

def _fire(receiver: Receiver, sales: list[str], *, threads: int, on_200=None) -> dict[str, str | None]:
    """Post one postback per sale from ``threads`` keep-alive clients; sale -> result (None when
    the request did not get a 200). A client stops at its first connection error."""
    results: dict[str, str | None] = {}
    pending = iter(sales)
    lock = threading.Lock()

    def client():
        session = requests.Session()
        while True:
            with lock:
                sale = next(pending, None)
            if sale is None:
                return
            results[sale] = None
            try:
                response = session.post(receiver.url + PATH, data=sale_body(sale), timeout=WAIT_S,
                                        headers={"Content-Type": FORM})
            except requests.RequestException:  # refused, reset, or cut mid-answer by the kill
                return
            if response.status_code == 200:
                results[sale] = response.json()["result"]
                if on_200:
                    on_200()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def _killer(receiver: Receiver, *, after: int):
    """An ``on_200`` callback that SIGKILLs the receiver at its ``after``-th 200, while the
    other clients are mid-request."""
    answered = itertools.count(1)

    def on_200():
        if next(answered) == after:
            receiver.proc.kill()

    return on_200


def test_every_200_survives_sigkill_and_a_resend_is_deduplicated(start, install):
    rng = random.Random()
    kill_points = [1, rng.randrange(5, 60), rng.randrange(60, 250)]  # after this many 200s
    for round_no, kill_after in enumerate(kill_points):
        receiver = start(install)
        sales = [f"K{round_no}{i:05d}" for i in range(kill_after + 400)]
        results = _fire(receiver, sales, threads=6, on_200=_killer(receiver, after=kill_after))
        receiver.proc.wait(timeout=WAIT_S)
        assert receiver.proc.returncode == -signal.SIGKILL, f"kill point {kill_after} never reached"

        restarted = start(install)  # on the same ledger
        stored = {row["sale_code"] for row in restarted.inbox() if row["sale_code"].startswith(f"K{round_no}")}
        answered_200 = {sale for sale, result in results.items() if result}
        assert len(answered_200) >= kill_after
        assert answered_200 <= stored, f"kill point {kill_after}: 200 answered but lost"
        assert stored <= set(results)

        # Monetizze retries everything it did not see a 200 for; we resend it all: nothing is doubled
        again = _fire(restarted, sorted(results), threads=6)
        assert all(again.values()), "a resend was not answered 200"
        assert {s for s, result in again.items() if result == "duplicate"} == stored
        rows = [r for r in restarted.inbox() if r["sale_code"].startswith(f"K{round_no}")]
        assert sorted(r["sale_code"] for r in rows) == sorted(results)
        assert all(r["times_seen"] == (2 if r["sale_code"] in stored else 1) for r in rows)
        assert restarted.stop() == 0


def test_two_receivers_on_one_ledger(start, install):
    first, second = start(install), start(install)
    assert first.port != second.port and first.ledger == second.ledger
    sales = [f"T{i:04d}" for i in range(150)]
    jobs = [(receiver, sale) for sale in sales for receiver in (first, second)]  # each sale reaches both
    random.shuffle(jobs)

    def post(job):
        receiver, sale = job
        response = receiver.post(sale_body(sale))
        return sale, response.status_code, response.json().get("result")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, jobs))

    assert [status for _sale, status, _result in answers] == [200] * len(jobs)
    by_sale: dict[str, list[str]] = {}
    for sale, _status, result in answers:
        by_sale.setdefault(sale, []).append(result)
    assert all(sorted(results) == ["duplicate", "stored"] for results in by_sale.values())
    rows = first.inbox()
    assert sorted(r["sale_code"] for r in rows) == sales  # each exactly once
    assert {r["times_seen"] for r in rows} == {2}


# --- the writer process and kept-alive connections -------------------------------------------

WRITER_PID = re.compile(r"ledger writer running \(pid (\d+)\)")


def writer_pids(receiver: Receiver) -> list[int]:
    return [int(pid) for pid in WRITER_PID.findall(receiver.log())]


def test_a_killed_writer_is_replaced_and_the_postback_in_hand_still_gets_its_200(receiver):
    assert receiver.post(sale_body("53000001")).status_code == 200
    [pid] = writer_pids(receiver)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), "the writer to die")

    response = receiver.post(sale_body("53000002"))
    assert response.status_code == 200
    assert response.json()["result"] == "stored"
    assert "the ledger writer ended (exit code -9); starting a new one" in receiver.log()
    assert len(writer_pids(receiver)) == 2 and running(writer_pids(receiver)[1])
    assert [r["sale_code"] for r in receiver.inbox()] == ["53000001", "53000002"]
    assert receiver.post(sale_body("53000003")).status_code == 200


def test_a_hung_writer_gets_503_within_the_commit_timeout_then_the_receiver_recovers(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="ledger_timeout_s = 1\n"))  # commit timeout 7 s
    [pid] = writer_pids(receiver)
    os.kill(pid, signal.SIGSTOP)
    try:
        response = receiver.post(sale_body("54000001"))
        assert response.status_code == 503
        assert response.json() == {"error": "ledger unavailable, retry later"}
    finally:
        os.kill(pid, signal.SIGCONT)
    assert receiver.post(sale_body("54000002")).json()["result"] == "stored"
    # Monetizze resends what got 503: the resumed writer may have stored it meanwhile, never twice
    resend = receiver.post(sale_body("54000001"))
    assert resend.status_code == 200 and resend.json()["result"] in ("stored", "duplicate")
    assert sorted(r["sale_code"] for r in receiver.inbox()) == ["54000001", "54000002"]
    assert writer_pids(receiver) == [pid]  # a slow writer is waited for, not replaced


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_writer_ends_with_its_receiver(receiver, sig):
    assert receiver.post(sale_body("55000001")).status_code == 200
    [pid] = writer_pids(receiver)
    receiver.stop(sig)
    wait_for(lambda: not running(pid), "the writer to end with its receiver")
    assert [r["sale_code"] for r in receiver.inbox()] == ["55000001"]


def test_more_kept_alive_clients_than_request_threads_are_all_served(start, tmp_path):
    receiver = start(install_with(tmp_path, receiver="threads = 2\n"))
    sales = [f"KA{i:04d}" for i in range(150)]
    results = _fire(receiver, sales, threads=6)  # 6 busy keep-alive connections, 2 threads
    assert set(results.values()) == {"stored"} and len(results) == len(sales)
    assert sorted(r["sale_code"] for r in receiver.inbox()) == sales


def test_an_idle_kept_alive_connection_is_served_again_later(receiver):
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=WAIT_S)
    try:
        answers = []
        for sale in ("56000001", "56000002"):
            conn.request("POST", PATH, body=sale_body(sale), headers={"Content-Type": FORM})
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read())["result"]))
            threading.Event().wait(0.3)  # idle well past the request thread's wait: back to the selector
        local_port = conn.sock.getsockname()[1]
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        assert conn.sock.getsockname()[1] == local_port  # the same connection all along
    finally:
        conn.close()
    assert answers == [(200, "stored"), (200, "stored")]
