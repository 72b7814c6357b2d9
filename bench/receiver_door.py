"""Issue 17's hostile cases, run by ``bench/receiver.py --only crowd,crowd-tls,longline``.

- **crowd**: 5,000 connections from 250 loopback addresses (20 each, under the per-address cap),
  a third idle, a third trickling a request head a byte a second, a third trickling a body after
  a whole head (``crowd-tls``: the same over TLS, with mute clients that never send a ClientHello
  instead of plain idle ones). The attackers reconnect whenever the receiver cuts them (head and
  body deadlines, 10 s by default), so the crowd stays at 5,000. Meanwhile legit postbacks, one
  at a time on new connections from another address: p50/p99 against the 1 s target, and the
  receiver's RSS (peak growth over its idle RSS).
- **longline**: eight connections streaming ``POST /aaaa…`` without a CRLF (and eight streaming
  one endless header value) for 8 s: the receiver's RSS before, at peak, and 2 s after.

Each case runs on this code (``iptvsync``), on the code before issue 17 when ``--before DIR``
names a checkout of it (``before``), and on the event-loop prototype (``asyncio``, plain HTTP
only) and the stdlib baseline (``baseline``, thread per connection, no head deadline).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import socket
import ssl
import threading
import time
from pathlib import Path

from support.crowd import Crowd
from support.receiver import self_signed_certificate

TARGET_S = 1.0
FORM = "application/x-www-form-urlencoded"


def rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1]) / 1024


def threads_of(pid: int) -> int:
    return int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1])


class Sampler:
    """The peak RSS of ``pid``, sampled every 50 ms in a thread."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.threads = pid, rss_mb(pid), threads_of(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            with contextlib.suppress(OSError, TypeError):
                self.peak = max(self.peak, rss_mb(self.pid))
                self.threads = max(self.threads, threads_of(self.pid))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _crowd_main(args: tuple, kwargs: dict, tls_cafile: str | None, conn) -> None:
    context = ssl.create_default_context(cafile=tls_cafile) if tls_cafile else None
    crowd = Crowd(*args, context=context, **kwargs)
    conn.send(("opened", crowd.held()))
    while not conn.poll(0.2):
        conn.send(("held", crowd.held(), crowd.cut, crowd.ticks))
    conn.recv()
    stats = {"cut": crowd.cut, "failed": crowd.failed, "held": crowd.held()}
    crowd.close()
    conn.send(("closed", stats))


class CrowdProcess:
    """``support.crowd.Crowd`` in a process of its own: its Python work (reconnecting thousands
    of connections after each deadline wave) must not hold the legit client's GIL."""

    def __init__(self, *args, tls_cafile: str | None = None, **kwargs):
        self._conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("fork").Process(
            target=_crowd_main, args=(args, kwargs, tls_cafile, child), daemon=True)
        self.proc.start()
        self.held_now = self._conn.recv()[1]
        self.held_min, self.cut, self.ticks = self.held_now, 0, 0

    def poll(self) -> None:
        while self._conn.poll():
            message = self._conn.recv()
            if message[0] == "held":
                _tag, self.held_now, self.cut, self.ticks = message
                self.held_min = min(self.held_min, self.held_now)

    def wait_ticks(self, ticks: int) -> None:
        self.poll()
        target = self.ticks + ticks
        while self.ticks < target:
            time.sleep(0.1)
            self.poll()

    def close(self) -> dict:
        self.poll()
        self._conn.send("stop")
        while True:
            message = self._conn.recv()
            if message[0] == "closed":
                break
        self.proc.join(timeout=30)
        return message[1]


def legit_post(port: int, path: str, body: bytes, context: ssl.SSLContext | None, timeout: float) -> tuple[float, int]:
    """One postback on a new connection from 127.0.9.9: (seconds to the answer, status; 0: none)."""
    started = time.perf_counter()
    answer = b""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=("127.0.9.9", 0))
        if context:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
    return time.perf_counter() - started, status


def bench_crowd(start_server, template: bytes, placeholder: bytes, path: str, *, kind: str, tls: bool,
                connections: int = 5000, addresses: int = 250, posts: int = 60, budget_s: float = 40.0,
                modes: list[str] | None = None) -> dict:
    """``start_server(kind, directory_name, extra_toml)`` -> a bench ``Server``; ``modes`` of the
    crowd's connections (support.crowd.MODES), by default idle, head and body in turn."""
    context = extra = cafile = None
    name = f"crowd{'-tls' if tls else ''}-{kind}"
    if tls:
        holder = Path(__import__("tempfile").mkdtemp(prefix="door-tls-"))
        cert, key = self_signed_certificate(holder)
        cafile = str(cert)
        context = ssl.create_default_context(cafile=cafile)
        extra = f'certfile = "{cert}"\nkeyfile = "{key}"\n'
    server = start_server(kind, name, extra or "")
    modes = modes or (["idle", "tls-head", "tls-body"] if tls else ["idle", "head", "body"])
    sources = [f"127.0.{1 + n // 250}.{2 + n % 250}" for n in range(addresses)]
    idle_rss = rss_mb(server.proc.pid)
    sampler = Sampler(server.proc.pid)
    opened_at = time.perf_counter()
    crowd = CrowdProcess(server.port, sources, connections // addresses, modes, path=path, tls_cafile=cafile,
                         reconnect=True)
    opened_s = time.perf_counter() - opened_at
    times, statuses = [], []
    try:
        crowd.wait_ticks(2)
        began = time.perf_counter()
        for i in range(posts):
            if time.perf_counter() - began > budget_s:
                break
            body = template.replace(placeholder, f"CR{kind[:2]}{i:012d}".encode())
            elapsed, status = legit_post(server.port, path, body, context, timeout=30)
            times.append(elapsed)
            statuses.append(status)
            crowd.poll()
            time.sleep(max(0.0, 0.25 - elapsed))  # spread over a head-deadline wave or two
    finally:
        stats = crowd.close()
        sampler.stop()
        server.stop()
    held_min = crowd.held_min
    crowd.cut = stats["cut"]
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return {"kind": kind, "tls": tls, "connections": connections, "addresses": addresses, "opened_s": opened_s,
            "held_min": held_min, "cut": crowd.cut, "posts": len(times), "ok": statuses.count(200),
            "p50_s": times[len(times) // 2], "p99_s": p99, "max_s": times[-1],
            "idle_rss_mb": idle_rss, "peak_rss_growth_mb": sampler.peak - idle_rss,
            "peak_threads": sampler.threads, "pass": statuses.count(200) == len(times) and p99 < TARGET_S}


def _stream(port: int, first: bytes, seconds: float, answers: list) -> None:
    filler = b"a" * 65536
    answer = b""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(first)
        sock.setblocking(False)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                answer = sock.recv(4096)
                break
            with contextlib.suppress(BlockingIOError):
                sock.send(filler)
            time.sleep(0.0005)
    answers.append(int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0)


def bench_longline(start_server, path: str, *, kind: str, what: str, streams: int = 8, seconds: float = 8.0) -> dict:
    """RSS while ``streams`` connections stream an endless request line (``what`` = "line") or
    header value ("header") for ``seconds``."""
    server = start_server(kind, f"longline-{what}-{kind}", "")
    first = b"POST /" if what == "line" else f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode()
    try:
        time.sleep(0.5)
        before = rss_mb(server.proc.pid)
        sampler = Sampler(server.proc.pid)
        answers: list[int] = []
        workers = [threading.Thread(target=_stream, args=(server.port, first, seconds, answers))
                   for _ in range(streams)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        time.sleep(2.0)
        after = rss_mb(server.proc.pid)
        sampler.stop()
    finally:
        server.stop()
    return {"kind": kind, "what": what, "streams": streams, "answers": sorted(answers), "rss_before_mb": before,
            "rss_peak_mb": sampler.peak, "rss_after_mb": after}
