"""Benchmark of the postback receiver: durable postbacks/s and latency under concurrent load.

    .venv/bin/python bench/receiver.py                      # the full run, about a minute on 2 cores
    .venv/bin/python bench/receiver.py --seconds 5 --connections 16 --loadgen python

Side by side, in one run, on the same disk (one working directory under bench/results/):

1. **iptvsync**: ``python -m iptvsync serve`` (cheroot + group commit), a real process on loopback;
2. **baseline**: the obvious alternative, the standard library's ``ThreadingHTTPServer`` doing the
   same parse + ``chave_unica`` check + redaction, then one ``INSERT`` committed per request
   (WAL, ``synchronous=FULL``) on one connection shared under a lock (``--baseline-mode
   per-thread`` gives each thread its own connection and lets SQLite's busy handler arbitrate);
3. **raw commit**: what the disk allows, single-row commits of a 5 kB blob in a loop (WAL,
   ``synchronous=FULL``), no HTTP, no parsing;
4. **hostile clients** (issue 9), on iptvsync: the time a legit postback takes while 150 slow
   connections trickle request heads at a byte a second (``slowloris``), and the receiver's
   memory growth while four 256 MiB and two 64 MiB chunked bodies stream at it (``flood``).

Each receiver run starts on a fresh ledger and is loaded at 16 and 64 keep-alive connections with
realistic ~5 kB form bodies (``approved-first-charge.json`` through ``iptvsync.monetizze.form.build_form``),
every request a distinct sale code, so every 200 is a newly committed row; after the run the ledger
is counted to check that every 200 is there. The load generator is ``wrk`` when installed (a Lua
script swaps the sale code per request), else a pure-Python one in a separate process (raw
sockets, one thread per connection). Results are printed and written to
``bench/results/receiver.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/support: the chunked-stream client
sys.path.insert(0, str(ROOT))

from support.receiver import stream_until_answered  # noqa: E402

from iptvsync.config import load_config  # noqa: E402
from iptvsync.errors import MalformedPostback  # noqa: E402
from iptvsync.ledger.db import Ledger  # noqa: E402
from iptvsync.ledger.inbox import inbox_row, store  # noqa: E402
from iptvsync.monetizze.form import build_form  # noqa: E402
from iptvsync.monetizze.postback import parse  # noqa: E402
from iptvsync.monetizze.redact import redact  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "receiver.json"
SAMPLE = ROOT / "tests" / "fixtures" / "monetizze" / "approved-first-charge.json"
CHAVE = "0123456789abcdef0123456789abcdef"  # the chave_unica the sample carries
PATH = "/monetizze/postback/bench-secret-segment"
FORM = "application/x-www-form-urlencoded"
PLACEHOLDER = "Q" + "0" * 15  # a sale code of the same width replaces it in every request
TARGETS = {"vs_baseline": 2.0, "vs_raw_commit": 0.40, "p99_ms_at_16": 100.0, "slowloris_s": 5.0, "flood_rss_mb": 100.0}

TOML = f"""
[ledger]
path = "iptvsync.db"

[receiver]
host = "127.0.0.1"
path = "{PATH}"
threads = THREADS
max_connections_per_ip = 256           # the load comes from one loopback address

[panels.main]
kind = "dry-run"

[products.145388]                     # the sample's product (a config needs one)
panel = "main"
days = 30
"""

WRK_SCRIPT = r"""
-- one distinct sale code per request: the body template's placeholder is swapped
local counter = 0
local template, path, tag

function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count)
end

function init(args)
  tag, path = args[1], args[3]
  local file = io.open(args[2], "rb")
  template = file:read("*a")
  file:close()
end

function request()
  counter = counter + 1
  local body = string.gsub(template, "PLACEHOLDER", string.format("%s%02d%010d", tag, id, counter))
  return wrk.format("POST", path, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
""".replace("PLACEHOLDER", PLACEHOLDER)


# An LD_PRELOAD shim that sleeps before each fsync/fdatasync: a slower disk, for --fsync-delay-ms.
FSYNC_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static void slow_disk(void) { const char *us = getenv("FSYNC_DELAY_US"); if (us) usleep(atoi(us)); }
int fsync(int fd) {
    static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fsync"); slow_disk(); return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int); if (!real) real = dlsym(RTLD_NEXT, "fdatasync"); slow_disk(); return real(fd);
}
"""


def child_env(workdir: Path, delay_ms: float) -> dict[str, str]:
    """The environment for the receivers and the raw test: without the shell's iptvsync settings
    (they would beat the benchmark's .env), and with the fsync-delay shim preloaded if asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IPTVSYNC_", "MONETIZZE_", "PANEL_", "SMTP_"))}
    if delay_ms <= 0:
        return env
    source, library = workdir / "slowdisk.c", workdir / "slowdisk.so"
    source.write_text(FSYNC_SHIM, encoding="utf-8")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True)
    env.update(LD_PRELOAD=str(library), FSYNC_DELAY_US=str(int(delay_ms * 1000)))
    return env


# --- the workload ----------------------------------------------------------------------------

def body_template() -> bytes:
    """The ~5 kB form body Monetizze posts for a first charge, sale code = PLACEHOLDER."""
    payload = json.loads(SAMPLE.read_text(encoding="utf-8"))
    payload["venda"]["codigo"] = PLACEHOLDER
    body = build_form(payload)
    assert body.count(PLACEHOLDER.encode()) == 2  # the bracket field and the `json` copy
    return body


def make_install(directory: Path, threads: int, extra: str = "") -> Path:
    """``extra``: lines added to [receiver]."""
    directory.mkdir(parents=True)
    toml = TOML.replace("THREADS", str(threads)).replace("[receiver]\n", "[receiver]\n" + extra, 1)
    (directory / "config.toml").write_text(toml, encoding="utf-8")
    (directory / ".env").write_text(f"MONETIZZE_CHAVE_UNICA={CHAVE}\n", encoding="utf-8")
    return directory / "config.toml"


# --- (b) the baseline receiver ---------------------------------------------------------------

def serve_baseline(config_path: str, mode: str) -> None:
    """Run the baseline receiver until SIGTERM (a child process of the benchmark)."""
    cfg = load_config(config_path)
    secret = cfg.require("MONETIZZE_CHAVE_UNICA")
    shared = Ledger(cfg.ledger_path)  # migrates
    lock = threading.Lock()
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # http.server writes the headers and the body in separate sends: with Nagle's algorithm
        # on, the body waits for the client's delayed ACK (~40 ms) and the baseline measures that
        # wait, not its work. iptvsync's cheroot sends an answer in one write, so a fair baseline
        # switches Nagle off too (TCP_NODELAY), as any production server in front would.
        disable_nagle_algorithm = True

        def do_POST(self):  # noqa: N802 (http.server's naming)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            content_type = self.headers.get("Content-Type")
            if self.path != cfg.receiver.path:
                return self.answer(404, {"error": "unknown path"})
            try:
                _payload, pb = parse(raw, content_type)
            except MalformedPostback:
                return self.answer(400, {"error": "malformed body"})
            if not hmac.compare_digest((pb.chave_unica or "").encode(), secret.encode()):
                return self.answer(403, {"error": "chave_unica missing or wrong"})
            row = inbox_row(pb, redact(raw, secret), content_type=content_type, remote_addr=self.client_address[0])
            try:
                if mode == "lock":
                    with lock:
                        inbox_id, duplicate = store(shared, row)
                else:
                    if not hasattr(local, "ledger"):
                        local.ledger = Ledger(cfg.ledger_path, migrate=False)
                    inbox_id, duplicate = store(local.ledger, row)
            except Exception:
                return self.answer(503, {"error": "ledger unavailable, retry later"})
            self.answer(200, {"result": "duplicate" if duplicate else "stored", "id": inbox_id})

        def answer(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    class BaselineServer(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = socket.SOMAXCONN  # the same listen backlog as iptvsync's

    server = BaselineServer((cfg.receiver.host, 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"baseline receiver on http://{cfg.receiver.host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.05)


# --- (e) an event-loop receiver, for the cheroot-or-event-loop decision (docs/receiver.md) ------

def serve_asyncio(config_path: str) -> None:
    """A minimal asyncio receiver doing iptvsync's work per request, through iptvsync's writer
    process (group commit, ``synchronous=FULL``): connections, heads and bodies on one event
    loop, with a total head deadline; the blocking commit in a thread pool of ``threads``.
    Plain HTTP/1.1 with Content-Length only, one access-log line per request like iptvsync's:
    a prototype to measure, not a server to ship (no TLS, no chunked bodies, no SIGTERM drain)."""
    import asyncio
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from iptvsync.receiver.writer import LedgerUnavailable, Writer

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access_log = logging.getLogger("iptvsync.access")  # the same access line as iptvsync's, for a fair cost
    cfg = load_config(config_path)
    secret = cfg.require("MONETIZZE_CHAVE_UNICA")
    Ledger(cfg.ledger_path).close()  # migrates
    writer = Writer(cfg.ledger_path, ledger_timeout_s=cfg.receiver.ledger_timeout_s)
    pool = ThreadPoolExecutor(max_workers=cfg.receiver.threads)

    def work(raw: bytes, content_type: str | None, remote: str) -> tuple[int, dict]:
        try:
            _payload, pb = parse(raw, content_type)
        except MalformedPostback:
            return 400, {"error": "malformed body"}
        if not hmac.compare_digest((pb.chave_unica or "").encode(), secret.encode()):
            return 403, {"error": "chave_unica missing or wrong"}
        row = inbox_row(pb, redact(raw, secret), content_type=content_type, remote_addr=remote)
        return row, None

    async def handle(reader, stream):
        remote = stream.get_extra_info("peername")[0]
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), cfg.receiver.header_timeout_s)
                except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                length = int(headers.get("content-length", "0"))
                if length > cfg.receiver.max_body_bytes:
                    status, body = 413, {"error": "body too large"}
                else:
                    raw = await asyncio.wait_for(reader.readexactly(length), cfg.receiver.request_timeout_s)
                    if path != cfg.receiver.path or method != "POST":
                        status, body = 404, {"error": "unknown path"}
                    else:
                        row, error = work(raw, headers.get("content-type"), remote)
                        if error:
                            status, body = row, error
                        else:
                            try:
                                inbox_id, duplicate = await loop.run_in_executor(pool, writer.store, row)
                                status, body = 200, {"result": "duplicate" if duplicate else "stored", "id": inbox_id}
                            except LedgerUnavailable:
                                status, body = 503, {"error": "ledger unavailable, retry later"}
                payload = json.dumps(body).encode()
                access_log.info('%s "%s %s" %d %.1fms %s', remote, method, "<postback>", status, 0.0,
                                body.get("result", ""))
                stream.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
                await stream.drain()
                if status == 413 or headers.get("connection", "").lower() == "close":
                    return
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            return
        finally:
            stream.close()

    async def main():
        server = await asyncio.start_server(handle, cfg.receiver.host, 0, backlog=socket.SOMAXCONN)
        port = server.sockets[0].getsockname()[1]
        print(f"asyncio receiver on http://{cfg.receiver.host}:{port}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
        writer.close()


# --- the servers under test, as processes -----------------------------------------------------

class Server:
    """A receiver process on a fresh install; its URL comes from its 'receiver on URL' line."""

    def __init__(self, kind: str, directory: Path, args, extra: str = ""):
        self.kind = kind
        self.config = make_install(directory, args.threads, extra)
        self.ledger = directory / "iptvsync.db"
        self.log_path = directory / "server.log"
        cwd, env = ROOT, args.env
        if kind in ("iptvsync", "before"):  # before: the checkout given as --before
            argv = [sys.executable, "-m", "iptvsync", "--config", str(self.config), "serve", "--port", "0"]
            if kind == "before":
                cwd, env = args.before, {**args.env, "PYTHONPATH": str(args.before)}
        elif kind == "asyncio":
            argv = [sys.executable, __file__, "--serve-asyncio", str(self.config)]
        else:
            argv = [sys.executable, __file__, "--serve-baseline", str(self.config),
                    "--baseline-mode", args.baseline_mode]
        # every kind wants the ledger made first (`iptvsync init`: creates it, keeps config and .env)
        subprocess.run([sys.executable, "-m", "iptvsync", "--config", str(self.config), "init"],
                       cwd=cwd, env=env, check=True, capture_output=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                         cwd=cwd, env=env)
        deadline = time.monotonic() + 60
        while not (match := re.search(r"receiver on https?://([\d.]+):(\d+)", self.log_path.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{kind} did not start:\n{self.log_path.read_text()}")
            time.sleep(0.02)
        self.host, self.port = match.group(1), int(match.group(2))

    def cpu_seconds(self) -> float:
        """user + system CPU time so far of the server process and its children (iptvsync's
        ledger writer process)."""
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(pid) for pid in (task / "children").read_text().split()]
        ticks = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def rows(self, sale_prefix: str) -> int:
        """Inbox rows whose sale code starts with ``sale_prefix``."""
        conn = sqlite3.connect(self.ledger)
        try:
            return conn.execute("SELECT count(*) FROM inbox WHERE substr(sale_code, 1, :n) = :prefix",
                                {"n": len(sale_prefix), "prefix": sale_prefix}).fetchone()[0]
        finally:
            conn.close()


# --- load generators ----------------------------------------------------------------------------

def run_wrk(server: Server, template_path: Path, script: Path, *, connections: int, seconds: float,
            tag: str, threads: int) -> dict:
    argv = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "30s", "-s", str(script), f"http://{server.host}:{server.port}",
            "--", tag, str(template_path), PATH]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^WRKJSON (.*)$", out, re.MULTILINE)
    if not match:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    raw = json.loads(match.group(1))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    duration = raw["duration_us"] / 1e6
    return {"ok": raw["requests"] - raw["status"], "errors": errors, "seconds": duration,
            "error_kinds": {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]},
            "p50_ms": raw["p50_us"] / 1000, "p99_ms": raw["p99_us"] / 1000, "max_ms": raw["max_us"] / 1000}


def _python_client(host, port, template, tag, index, warmup_until, stop_at, out) -> None:
    """One keep-alive connection posting back to back; appends (latency_s, ok) of measured requests.
    Sale codes are ``<tag>w…`` during the warm-up and ``<tag>m…`` once measuring."""
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {FORM}\r\n"
            f"Content-Length: {len(template)}\r\n\r\n").encode()
    marker = PLACEHOLDER.encode()
    sock = socket.create_connection((host, port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    sent = 0
    try:
        while (started := time.perf_counter()) < stop_at:
            sent += 1
            phase = "m" if started >= warmup_until else "w"
            sock.sendall(head + template.replace(marker, f"{tag}{phase}{index:03d}{sent:09d}".encode()))
            status = int(reader.readline().split()[1])
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            if started >= warmup_until:
                out.append((time.perf_counter() - started, status == 200))
    except OSError:
        out.append((0.0, False))
    finally:
        sock.close()


def _python_loadgen(host, port, template, tag, connections, warmup, seconds, pipe) -> None:
    """A child process: ``connections`` client threads; sends back the measured requests."""
    begin = time.perf_counter()
    warmup_until, stop_at = begin + warmup, begin + warmup + seconds
    outs: list[list] = [[] for _ in range(connections)]
    threads = [threading.Thread(target=_python_client, args=(host, port, template, tag, i, warmup_until, stop_at,
                                                               outs[i])) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipe.send([sample for out in outs for sample in out])
    pipe.close()


def run_python(server: Server, template: bytes, *, connections: int, warmup: float, seconds: float, tag: str) -> dict:
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=_python_loadgen, args=(server.host, server.port, template, tag,
                                                                  connections, warmup, seconds, send))
    child.start()
    samples = receive.recv()
    child.join()
    latencies = sorted(latency for latency, ok in samples if ok)
    errors = sum(1 for _latency, ok in samples if not ok)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else float("nan")

    return {"ok": len(latencies), "errors": errors, "seconds": seconds,
            "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": latencies[-1] * 1000 if latencies else float("nan")}


# --- (c) the raw commit rate -------------------------------------------------------------------

def raw_commit_rate(directory: Path, seconds: float, env: dict) -> dict:
    """Measured in a child process, with the same environment as the receivers."""
    out = subprocess.run([sys.executable, __file__, "--raw-commit", str(directory), "--seconds", str(seconds)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def measure_raw_commit(directory: Path, seconds: float) -> dict:
    """Single-row commits of a 5 kB blob, WAL + synchronous=FULL, in ``directory``."""
    path = directory / "raw-commit.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    body = os.urandom(5000)
    latencies = []
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - started)
    elapsed = time.perf_counter() - begin
    conn.close()
    latencies.sort()
    return {"commits_per_s": len(latencies) / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(0.99 * len(latencies))] * 1000}


# --- (d) hostile clients -------------------------------------------------------------------------

def _connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=30, source_address=(source, 0))


def _legit_post(server: Server, template: bytes, sale: str) -> tuple[float, int]:
    """One postback on a new connection: (seconds to the answer, status)."""
    body = template.replace(PLACEHOLDER.encode(), sale.encode())
    started = time.perf_counter()
    with _connect(server) as sock:
        sock.settimeout(30)
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
    return time.perf_counter() - started, status


def bench_slowloris(args, workdir: Path, template: bytes, slow: int = 150, kind: str = "iptvsync") -> dict:
    """Time legit postbacks while ``slow`` connections (15 per loopback address, under the
    per-address cap) trickle a request head at one byte a second."""
    server = Server(kind, workdir / f"slowloris-{kind}", args)
    sources = [f"127.0.0.{2 + i // 15}" for i in range(slow)]
    socks = [_connect(server, source) for source in sources]
    text = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Padding: {'a' * 64}\r\n".encode()
    stop = threading.Event()

    def trickle():
        for offset in range(len(text)):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(text[offset:offset + 1])
            if stop.wait(1.0):
                return

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    posts = args.slow_posts
    try:
        time.sleep(2.0)  # every slow connection is inside a request by now
        times, statuses = [], []
        for i in range(posts):
            elapsed, status = _legit_post(server, template, f"SL{i:014d}")
            times.append(elapsed)
            statuses.append(status)
        threads = int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{server.proc.pid}/status").read_text())[1])
    finally:
        stop.set()
        trickler.join()
        for sock in socks:
            sock.close()
        server.stop()
    times.sort()
    return {"slow_connections": slow, "posts": posts, "ok": statuses.count(200),
            "p50_s": times[len(times) // 2], "max_s": times[-1], "server_threads": threads}


def _rss_kb(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1])


def _chunked_stream(server: Server, declared: int, statuses: list, limit_s: float = 10.0) -> None:
    with _connect(server) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n{declared:x}\r\n".encode())
        answer = stream_until_answered(sock, declared, limit_s)
    statuses.append(int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0)


def bench_flood(args, workdir: Path, template: bytes) -> dict:
    """The receiver's RSS growth while four 256 MiB and two 64 MiB chunked bodies stream at it."""
    server = Server("iptvsync", workdir / "flood", args)
    try:
        _legit_post(server, template, "FL00000000000001")  # warm: the first request's imports
        before = _rss_kb(server.proc.pid)
        peak, done = [before], threading.Event()

        def sample():
            while not done.is_set():
                with contextlib.suppress(OSError):
                    peak.append(_rss_kb(server.proc.pid))
                done.wait(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        statuses: list[int] = []
        started = time.perf_counter()
        streams = [threading.Thread(target=_chunked_stream, args=(server, size, statuses))
                   for size in [256 << 20] * 4 + [64 << 20] * 2]
        for stream in streams:
            stream.start()
        for stream in streams:
            stream.join()
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    finally:
        server.stop()
    return {"streams": len(statuses), "statuses": sorted(statuses), "rss_before_mb": before / 1024,
            "rss_growth_mb": (max(peak) - before) / 1024, "seconds": elapsed}


# --- the run -------------------------------------------------------------------------------------

def bench_receiver(kind: str, connections: int, args, workdir: Path, template: bytes, run_no: int) -> dict:
    server = Server(kind, workdir / f"{kind}-{connections}", args)
    tag = f"B{run_no:02d}"  # sale codes: tag, "w" (warm-up) or "m" (measured), then a counter
    try:
        cpu_before = wall_before = None
        if args.loadgen == "wrk":
            template_path = workdir / "body.form"
            template_path.write_bytes(template)
            script = workdir / "bench.lua"
            script.write_text(WRK_SCRIPT, encoding="utf-8")
            run_wrk(server, template_path, script, connections=connections, seconds=args.warmup,
                    tag=tag + "w", threads=args.wrk_threads)
            cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()
            result = run_wrk(server, template_path, script, connections=connections, seconds=args.seconds,
                             tag=tag + "m", threads=args.wrk_threads)
        else:
            cpu_before, wall_before = server.cpu_seconds(), time.perf_counter()  # includes the warm-up
            result = run_python(server, template, connections=connections, warmup=args.warmup,
                                seconds=args.seconds, tag=tag)
        cpu = (server.cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)
    finally:
        exit_code = server.stop()
        if result.get("errors") if "result" in locals() else False:  # what the server said about them
            result["server_said"] = [line for line in server.log_path.read_text(errors="replace").splitlines()
                                     if " rejected " in line or " ERROR " in line or "http: " in line][-5:]
    result.update(kind=kind, connections=connections, postbacks_per_s=result["ok"] / result["seconds"],
                  server_cpu=cpu, ledger_rows=server.rows(tag + "m"), exit_code=exit_code)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (default 2)")
    parser.add_argument("--connections", default="16,64", help="comma-separated (default 16,64)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="wrk if installed (auto), else the Python one")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave the server a core)")
    parser.add_argument("--threads", type=int, default=64, help="[receiver] threads of iptvsync (default 64)")
    parser.add_argument("--only", default="iptvsync,baseline,raw,slowloris,flood,crowd,crowd-tls,longline",
                        help="which of iptvsync,baseline,raw,slowloris,flood,crowd,crowd-tls,longline to run "
                             "(bench/receiver_door.py: issue 17); asyncio adds the event-loop prototype")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="a checkout of the receiver before issue 17: crowd and longline run on it too")
    parser.add_argument("--crowd", type=int, default=5000, help="connections in the crowd (default 5000)")
    parser.add_argument("--crowd-addresses", type=int, default=250, help="source addresses of the crowd (default 250)")
    parser.add_argument("--crowd-mode", default="",
                        help="comma-separated crowd modes (tests/support/crowd.py MODES; e.g. bigbody: slow "
                             "100 kB bodies on the secret path); default idle,head,body")
    parser.add_argument("--crowd-posts", type=int, default=60,
                        help="legit postbacks timed in the crowd (default 60, at most 40 s of them)")
    parser.add_argument("--baseline-mode", choices=("lock", "per-thread"), default="lock",
                        help="baseline commits on one shared connection (lock) or one per thread")
    parser.add_argument("--dir", type=Path, default=ROOT / "bench" / "results",
                        help="where the ledgers go: the disk being measured (default bench/results)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--fsync-delay-ms", type=float, default=0.0,
                        help="simulate a slower disk: sleep this long before each fsync (needs cc)")
    parser.add_argument("--slow-posts", type=int, default=10,
                        help="legit postbacks timed while the slow connections are open (default 10)")
    parser.add_argument("--serve-baseline", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--serve-asyncio", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--raw-commit", metavar="DIR", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        return serve_baseline(args.serve_baseline, args.baseline_mode)
    if args.serve_asyncio:
        return serve_asyncio(args.serve_asyncio)
    if args.raw_commit:
        return print(json.dumps(measure_raw_commit(args.raw_commit, args.seconds)))
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), or use --loadgen python")
    connection_counts = [int(c) for c in args.connections.split(",")]
    only = set(args.only.split(","))

    args.dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="receiver-", dir=args.dir))
    args.env = child_env(workdir, args.fsync_delay_ms)
    template = body_template()
    print(f"receiver benchmark: {os.cpu_count()} cores, Python {platform.python_version()}, load generator "
          f"{args.loadgen}, {len(template)} B form bodies, {args.seconds:g}s per run, ledgers in {workdir}"
          + (f", +{args.fsync_delay_ms:g} ms per fsync" if args.fsync_delay_ms else ""))
    runs: list[dict] = []
    raw = None
    hostile: dict = {}
    try:
        if "slowloris" in only:
            hostile["slowloris"] = bench_slowloris(args, workdir, template)
            sl = hostile["slowloris"]
            print(f"  slowloris: {sl['slow_connections']} slow connections open, {sl['ok']}/{sl['posts']} legit "
                  f"postbacks 200, p50 {sl['p50_s'] * 1000:.0f} ms, max {sl['max_s'] * 1000:.0f} ms "
                  f"({sl['server_threads']} server threads)")
        if "asyncio" in only and "slowloris" in only:
            hostile["slowloris_asyncio"] = sl = bench_slowloris(args, workdir, template, kind="asyncio")
            print(f"  slowloris (asyncio prototype): {sl['ok']}/{sl['posts']} legit postbacks 200, "
                  f"p50 {sl['p50_s'] * 1000:.0f} ms, max {sl['max_s'] * 1000:.0f} ms")
        if "flood" in only:
            hostile["flood"] = fl = bench_flood(args, workdir, template)
            print(f"  chunked flood: {fl['streams']} streams answered {fl['statuses']}, RSS "
                  f"{fl['rss_before_mb']:.0f} MB + {fl['rss_growth_mb']:.1f} MB at peak, {fl['seconds']:.1f} s")
        run_door_cases(args, only, workdir, template, hostile)
        if "raw" in only:
            raw = raw_commit_rate(workdir, min(args.seconds, 5.0), args.env)
            print(f"  raw commit: {raw['commits_per_s']:.0f} commits/s (p50 {raw['p50_ms']:.2f} ms, "
                  f"p99 {raw['p99_ms']:.2f} ms)")
        for connections in connection_counts:
            for kind in ("iptvsync", "before", "asyncio", "baseline"):
                if kind in only or (kind == "before" and args.before and "iptvsync" in only):
                    run = bench_receiver(kind, connections, args, workdir, template, len(runs))
                    runs.append(run)
                    print(f"  {kind:<9} c={connections:<3} {run['postbacks_per_s']:7.0f}/s  p50 {run['p50_ms']:6.1f} ms"
                          f"  p99 {run['p99_ms']:6.1f} ms  errors {run['errors']}  server CPU "
                          f"{run['server_cpu']:.0%}  rows {run['ledger_rows']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report = summarize(runs, raw, connection_counts, hostile)
    print_table(runs, raw, report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"seconds": args.seconds, "warmup": args.warmup, "loadgen": args.loadgen,
                     "baseline_mode": args.baseline_mode, "threads": args.threads, "body_bytes": len(template),
                     "fsync_delay_ms": args.fsync_delay_ms},
        "raw_commit": raw, "runs": runs, "hostile": hostile, **report}, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.out}")
    sys.exit(0 if all(check["ok"] for check in report["targets"].values()) else 1)


def run_door_cases(args, only: set, workdir: Path, template: bytes, hostile: dict) -> None:
    """Issue 17's crowd and long-line cases (bench/receiver_door.py) on each receiver kind."""
    import receiver_door as door

    def start_server(kind: str, name: str, extra: str) -> Server:
        return Server(kind, workdir / name, args, extra)

    kinds = ["iptvsync", *(["before"] if args.before else []), "asyncio", "baseline"]
    for case, tls in (("crowd", False), ("crowd-tls", True)):
        if case not in only:
            continue
        for kind in kinds if not tls else ["iptvsync"]:  # the old receiver cannot even open a TLS crowd
            result = door.bench_crowd(start_server, template, PLACEHOLDER.encode(), PATH, kind=kind, tls=tls,
                                      connections=args.crowd, posts=args.crowd_posts,
                                      addresses=args.crowd_addresses,
                                      modes=args.crowd_mode.split(",") if args.crowd_mode else None)
            hostile.setdefault(case, []).append(result)
            print(f"  {case:<9} {kind:<9} {result['connections']} conns/{result['addresses']} addresses "
                  f"(fewest held {result['held_min']}, cut+reopened {result['cut']}): {result['ok']}/{result['posts']}"
                  f" legit 200, p50 {result['p50_s'] * 1000:.0f} ms, p99 {result['p99_s'] * 1000:.0f} ms -> "
                  f"{'PASS' if result['pass'] else 'MISS'} (< {door.TARGET_S:g} s); "
                  f"RSS +{result['peak_rss_growth_mb']:.0f} MB over {result['idle_rss_mb']:.0f} MB, "
                  f"{result['peak_threads']} threads")
    if "longline" in only:
        for what in ("line", "header"):
            for kind in kinds:
                result = door.bench_longline(start_server, PATH, kind=kind, what=what)
                hostile.setdefault("longline", []).append(result)
                print(f"  longline  {kind:<9} 8 endless {what}s: answers {result['answers']}, RSS "
                      f"{result['rss_before_mb']:.0f} MB before, {result['rss_peak_mb']:.0f} MB peak, "
                      f"{result['rss_after_mb']:.0f} MB after")


def door_checks(hostile: dict) -> dict:
    """Issue 17's targets, and this code against the best other receiver of the same run."""
    checks = {}
    for case in ("crowd", "crowd-tls"):
        runs = {r["kind"]: r for r in hostile.get(case, [])}
        mine = runs.get("iptvsync")
        if not mine:
            continue
        checks[f"{case}: legit postback p99 < 1 s, {mine['connections']} connections held"] = {
            "value": round(mine["p99_s"], 3), "ok": mine["pass"]}
        others = [r for kind, r in runs.items() if kind != "iptvsync"]
        if others:
            best = min(others, key=lambda r: r["p99_s"])
            checks[f"{case}: p99 of best other ({best['kind']}) / iptvsync"] = {
                "value": round(best["p99_s"] / mine["p99_s"], 2), "ok": True}
    growth = {}
    for r in hostile.get("longline", []):
        growth.setdefault(r["kind"], []).append(r["rss_peak_mb"] - r["rss_before_mb"])
    if "iptvsync" in growth:
        mine = max(growth["iptvsync"])
        checks["longline: RSS peak growth < 30 MB"] = {"value": round(mine, 1), "ok": mine < 30}
        for kind, grew in growth.items():
            if kind != "iptvsync":
                checks[f"longline: RSS peak growth of {kind} (MB), for comparison"] = {
                    "value": round(max(grew), 1), "ok": True}
    return checks


def summarize(runs: list[dict], raw: dict | None, connection_counts: list[int], hostile: dict | None = None) -> dict:
    by = {(r["kind"], r["connections"]): r for r in runs}
    ratios = {}
    for c in connection_counts:
        mine, base = by.get(("iptvsync", c)), by.get(("baseline", c))
        if mine and base:
            ratios[f"vs_baseline_c{c}"] = mine["postbacks_per_s"] / base["postbacks_per_s"]
        if mine and raw:
            ratios[f"vs_raw_commit_c{c}"] = mine["postbacks_per_s"] / raw["commits_per_s"]
    best = max((r["postbacks_per_s"] for r in runs if r["kind"] == "iptvsync"), default=None)
    checks = {}
    for c in connection_counts:
        ratio = ratios.get(f"vs_baseline_c{c}")
        if ratio is not None:
            checks[f"iptvsync ≥ {TARGETS['vs_baseline']:g}× baseline (c={c})"] = {
                "value": round(ratio, 2), "ok": ratio >= TARGETS["vs_baseline"]}
    if best is not None and raw:
        share = best / raw["commits_per_s"]
        checks[f"iptvsync ≥ {TARGETS['vs_raw_commit']:.0%} of raw commit rate (best run)"] = {
            "value": round(share, 3), "ok": share >= TARGETS["vs_raw_commit"]}
    if ("iptvsync", 16) in by:
        p99 = by[("iptvsync", 16)]["p99_ms"]
        checks[f"iptvsync p99 < {TARGETS['p99_ms_at_16']:g} ms at 16 connections"] = {
            "value": round(p99, 1), "ok": p99 < TARGETS["p99_ms_at_16"]}
    mine = [r for r in runs if r["kind"] == "iptvsync"]
    if mine:
        errors = sum(r["errors"] for r in mine)
        checks["iptvsync zero errors"] = {"value": errors, "ok": errors == 0}
        lost = [r for r in mine if r["ledger_rows"] < r["ok"]]
        checks["every iptvsync 200 is in the ledger"] = {"value": len(lost), "ok": not lost}
    if hostile and "slowloris" in hostile:
        sl = hostile["slowloris"]
        checks[f"legit postback < {TARGETS['slowloris_s']:g} s with 150 slow connections open (max)"] = {
            "value": round(sl["max_s"], 3), "ok": sl["ok"] == sl["posts"] and sl["max_s"] < TARGETS["slowloris_s"]}
    if hostile and "flood" in hostile:
        fl = hostile["flood"]
        checks[f"RSS growth < {TARGETS['flood_rss_mb']:g} MB under the chunked flood, every stream 413"] = {
            "value": round(fl["rss_growth_mb"], 1),
            "ok": fl["rss_growth_mb"] < TARGETS["flood_rss_mb"] and set(fl["statuses"]) == {413}}
    checks.update(door_checks(hostile or {}))
    return {"ratios": {k: round(v, 3) for k, v in ratios.items()}, "targets": checks}


def print_table(runs: list[dict], raw: dict | None, report: dict) -> None:
    print(f"\n{'receiver':<10}{'conns':>6}{'postbacks/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'server CPU':>12}{'vs baseline':>13}{'vs raw':>8}")
    base = {r["connections"]: r["postbacks_per_s"] for r in runs if r["kind"] == "baseline"}
    for r in runs:
        vs_base = f"{r['postbacks_per_s'] / base[r['connections']]:.2f}×" if r["connections"] in base else "-"
        vs_raw = f"{r['postbacks_per_s'] / raw['commits_per_s']:.0%}" if raw else "-"
        print(f"{r['kind']:<10}{r['connections']:>6}{r['postbacks_per_s']:>13.0f}{r['p50_ms']:>9.1f}"
              f"{r['p99_ms']:>9.1f}{r['errors']:>8}{r['server_cpu']:>12.0%}{vs_base:>13}{vs_raw:>8}")
    if raw:
        print(f"{'raw commit':<10}{'1':>6}{raw['commits_per_s']:>13.0f}{raw['p50_ms']:>9.2f}{raw['p99_ms']:>9.2f}")
    print()
    for name, check in report["targets"].items():
        print(f"  {'PASS' if check['ok'] else 'MISS'}  {name}: {check['value']}")


if __name__ == "__main__":
    main()
