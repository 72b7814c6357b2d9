"""Benchmark of ``iptvsync process``: apply, panel sync and mail on a 10,000-postback backlog.

    .venv/bin/python bench/process.py                      # the full run, ~3 minutes on 2 cores
    .venv/bin/python bench/process.py --postbacks 2000 --concurrency 16,32 --baseline 100

What it does, on a fresh ledger in a temporary directory:

1. stores N approved postbacks (distinct sales and subscriptions, realistic form bodies made by
   ``iptvsync.monetizze.form.build_form``, paid an hour ago) in the inbox, as the receiver does;
2. **apply**: times ``apply_inbox`` alone on those N rows (postbacks/s);
3. **panel**: times ``sync_panels`` against a fake XUI.one admin panel (``kind = "xui-admin"``,
   ``latency_s`` per call) with ``max_concurrency`` C, and compares the wall time with the
   ideal ``calls x latency / C``; the fake runs in a child process so that it does not share
   the client's GIL (its call counts come back over a pipe);
4. **mail**: times ``send_outbox`` writing the N activation emails to a maildir;
5. **sequential baseline**: apply + sync of a smaller backlog with ``max_concurrency = 1``,
   for the per-subscription speed-up.

Stages are called one by one, in ``run_process``'s order (apply, sweep, sync, mail), so each
can be timed. Results are printed and written to ``bench/results/process.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/support: fake panels, postbacks, installs
sys.path.insert(0, str(ROOT))

from support.fakepanel import mysql_row  # noqa: E402
from support.install import BASE_TOML, write_install  # noqa: E402
from support.postbacks import payload  # noqa: E402
from support.xui import FakeXuiAdmin  # noqa: E402

from iptvsync.clock import SAO_PAULO, now  # noqa: E402
from iptvsync.config import load_config  # noqa: E402
from iptvsync.engine.apply import apply_inbox  # noqa: E402
from iptvsync.engine.mail_stage import send_outbox  # noqa: E402
from iptvsync.engine.runner import build_panels  # noqa: E402
from iptvsync.engine.sweep import sweep  # noqa: E402
from iptvsync.engine.sync import sync_panels  # noqa: E402
from iptvsync.ledger.db import Ledger  # noqa: E402
from iptvsync.ledger.inbox import inbox_row, store_rows  # noqa: E402
from iptvsync.monetizze.form import build_form  # noqa: E402
from iptvsync.monetizze.postback import parse  # noqa: E402

API_KEY = "bench-api-key"
FORM = "application/x-www-form-urlencoded"
RESULTS = ROOT / "bench" / "results" / "process.json"
APPLY_TARGET = 2000.0  # postbacks/s
PANEL_TARGET = 1.5  # wall / (calls x latency / concurrency)

def install_toml(url: str, concurrency: int) -> str:
    """The tests' base install (maildir email), with the panel pointed at the fake XUI admin."""
    return BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{url}"\n'
                             f'max_concurrency = {concurrency}\ntimeout_s = 30')


# -- the fake panel, in its own process ------------------------------------------------------

class IndexedXuiAdmin(FakeXuiAdmin):
    """FakeXuiAdmin whose ``get_lines`` search finds a username through a dict.

    The fake's search is a LIKE over every line's columns: O(lines) per call, under the fake's
    lock, so at 10,000 lines the fake itself would be the bottleneck (and O(n²) overall). The
    benchmark's usernames are distinct 12-character hashes that never occur inside another
    line's columns, so an exact-username lookup returns what the LIKE scan would.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.by_username: dict[str, int] = {}

    def store(self, row: dict) -> dict:
        old = self.lines.get(row["id"])
        if old is not None and self.by_username.get(old["username"]) == row["id"]:
            del self.by_username[old["username"]]
        self.by_username[row["username"]] = row["id"]
        return super().store(row)

    def do_get_lines(self, request: dict) -> dict:
        search = request.get("search")
        term = str(search.get("value", "")) if isinstance(search, dict) else ""
        if not term:
            return super().do_get_lines(request)
        row = self.lines.get(self.by_username.get(term, -1))
        hits = [row] if row is not None and self.visible(row) else []
        page = [{**{k: r[k] for k in self.list_columns}, "active_connections": 0} for r in hits]
        return {"status": "STATUS_SUCCESS", "data": [mysql_row(r) for r in page],
                "recordsTotal": str(len(self.lines)), "recordsFiltered": str(len(hits))}


def listen_backlog(size: int = 512) -> None:
    """Let the fake's listening socket queue ``size`` connections, like nginx in front of a panel.

    ``http.server`` listens with a backlog of 5: the engine's first 32 concurrent calls open
    their kept-alive connections at once and would overflow it, and the kernel would drop
    connections (seen as "connection lost" errors and 1 s SYN retransmits), which would be a
    benchmark artefact, not the engine's cost.
    """
    ThreadingHTTPServer.request_queue_size = size


def fake_panel_process(conn, latency_s: float) -> None:
    """Child process: serve the fake panel; answer "stats", "reset" and "stop" on ``conn``."""
    listen_backlog()
    fake = IndexedXuiAdmin(api_key=API_KEY).start()
    fake.latency_s = latency_s
    conn.send(fake.url)
    while True:
        command = conn.recv()
        if command == "stop":
            fake.stop()
            conn.send(None)
            return
        conn.send(answer(fake, command, cpu_s=time.process_time()))


def answer(fake, command: str, cpu_s: float | None):
    """The fake's side of "stats" (what it served) and "reset" (forget it all)."""
    with fake._lock:
        if command == "reset":
            fake.calls.clear()
            fake.queries.clear()
            fake.lines.clear()
            fake.by_username.clear()
            fake.max_inflight = 0
            return None
        return {"calls": len(fake.calls), "by_action": dict(Counter(a for a, _ in fake.calls)),
                "lines": len(fake.lines), "max_inflight": fake.max_inflight, "cpu_s": cpu_s}


class FakeInChild:
    def __init__(self, latency_s: float):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=fake_panel_process, args=(child, latency_s), daemon=True)
        self.proc.start()
        self.url = self.receive()

    def receive(self, timeout_s: float = 60):
        if not self.conn.poll(timeout_s):
            raise RuntimeError(f"the fake panel process did not answer (exit code {self.proc.exitcode})")
        return self.conn.recv()

    def ask(self, command: str):
        self.conn.send(command)
        return self.receive()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.ask("stop")
        self.proc.join(5)


class FakeInProcess:
    """The same fake in this process (``--fake-in-process``): to see what sharing the GIL costs."""

    def __init__(self, latency_s: float):
        listen_backlog()
        self.fake = IndexedXuiAdmin(api_key=API_KEY).start()
        self.fake.latency_s = latency_s
        self.url = self.fake.url

    def ask(self, command: str):
        return answer(self.fake, command, cpu_s=None)

    def stop(self) -> None:
        self.fake.stop()


# -- building the backlog --------------------------------------------------------------------

def make_install(directory: Path, url: str, concurrency: int):
    path = write_install(directory, install_toml(url, concurrency),
                         env={"PANEL_MAIN_API_KEY": API_KEY})
    return load_config(path)


def make_rows(count: int, first: int = 0) -> list[dict]:
    """Inbox rows for ``count`` approved first charges, each its own sale and subscription."""
    paid = (now() - timedelta(hours=1)).astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")
    rows = []
    for i in range(first, first + count):
        body = build_form(payload(2, sale=str(70_000_000 + i), subscription=str(3_000_000 + i), paid=paid,
                                  email=f"buyer{i:06d}@example.com"))
        _, pb = parse(body, FORM)
        rows.append(inbox_row(pb, body, content_type=FORM, remote_addr="127.0.0.1"))
    return rows


def fill_inbox(ledger: Ledger, rows: list[dict]) -> None:
    for start in range(0, len(rows), 1000):
        with ledger.tx() as conn:
            store_rows(conn, rows[start:start + 1000])


# -- stages ------------------------------------------------------------------------------------

def timed(fn, *args, **kwargs):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


class TxTimer:
    """Times every outermost ``Ledger.tx()`` while installed: waiting for the write lock
    (``BEGIN IMMEDIATE``), the work inside, and the ``COMMIT`` (the fsync). Only one writer
    holds the lock at a time, so inside + commit summed over all threads is time the panel
    workers spent in single file."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0
        self.wait_s = self.inside_s = self.commit_s = 0.0

    @contextlib.contextmanager
    def installed(self):
        original = Ledger.tx
        timer = self

        @contextlib.contextmanager
        def tx(ledger):
            if getattr(ledger, "_depth", 0):  # joins an open transaction: nothing to time
                with original(ledger) as conn:
                    yield conn
                return
            t0 = time.perf_counter()
            manager = original(ledger)
            conn = manager.__enter__()
            t1 = time.perf_counter()
            try:
                yield conn
            except BaseException:
                if not manager.__exit__(*sys.exc_info()):
                    raise
                return
            t2 = time.perf_counter()
            manager.__exit__(None, None, None)
            t3 = time.perf_counter()
            with timer.lock:
                timer.count += 1
                timer.wait_s += t1 - t0
                timer.inside_s += t2 - t1
                timer.commit_s += t3 - t2

        Ledger.tx = tx
        try:
            yield self
        finally:
            Ledger.tx = original

    def summary(self, wall_s: float) -> dict:
        n = max(1, self.count)
        return {"transactions": self.count, "commit_ms_avg": round(self.commit_s / n * 1000, 2),
                "lock_wait_ms_avg": round(self.wait_s / n * 1000, 2), "commit_s": round(self.commit_s, 2),
                "inside_s": round(self.inside_s, 2),
                "write_lock_busy": round((self.inside_s + self.commit_s) / wall_s, 2) if wall_s else None}


def panel_stage(cfg, fake, latency_s: float, concurrency: int, count: int) -> dict:
    fake.ask("reset")
    before = fake.ask("stats")
    ledger = Ledger(cfg.ledger_path)
    sweep_counts = sweep(ledger, cfg, now())
    ledger.close()
    with TxTimer().installed() as txs:
        result, wall, cpu = timed(sync_panels, cfg.ledger_path, cfg, build_panels(cfg), now())
    after = fake.ask("stats")
    calls = after["calls"]
    ideal = calls * latency_s / concurrency
    fake_cpu = after["cpu_s"] - before["cpu_s"] if after["cpu_s"] is not None else None
    return {
        "concurrency": concurrency, "subscriptions": count, "synced": result.synced, "failed": result.failed,
        "skipped": result.skipped, "wall_s": round(wall, 3), "calls": calls, "engine_calls": len(result.calls),
        "calls_by_action": after["by_action"], "calls_per_subscription": round(calls / max(1, count), 2),
        "ideal_s": round(ideal, 3), "wall_over_ideal": round(wall / ideal, 3) if ideal else None,
        "per_subscription_ms": round(wall / max(1, count) * 1000, 3),
        "calls_per_s": round(calls / wall, 1), "max_inflight": after["max_inflight"],
        "lines_on_panel": after["lines"], "client_cpu_s": round(cpu, 2),
        "fake_cpu_s": round(fake_cpu, 2) if fake_cpu is not None else None,
        "sweep": sweep_counts, "ledger": txs.summary(wall),
    }


def run(args) -> dict:
    latency_s = args.latency_ms / 1000
    concurrencies = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    out: dict = {
        "params": {"postbacks": args.postbacks, "latency_ms": args.latency_ms, "concurrency": concurrencies,
                   "baseline": args.baseline, "fake": "in-process" if args.fake_in_process else "child process"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version, "platform": platform.platform()},
    }
    fake = (FakeInProcess if args.fake_in_process else FakeInChild)(latency_s)
    tmp = Path(tempfile.mkdtemp(prefix="iptvsync-bench-"))
    try:
        # -- the backlog, applied once --------------------------------------------------------
        t = time.perf_counter()
        rows = make_rows(args.postbacks)
        cfg = make_install(tmp / "apply", fake.url, concurrencies[0])
        ledger = Ledger(cfg.ledger_path)
        fill_inbox(ledger, rows)
        out["setup_s"] = round(time.perf_counter() - t, 2)
        print(f"setup: {args.postbacks} postbacks stored in {out['setup_s']} s", flush=True)

        counts, wall, cpu = timed(apply_inbox, ledger, cfg, now())
        assert counts["applied"] == args.postbacks, counts
        out["apply"] = {"postbacks": args.postbacks, **counts, "wall_s": round(wall, 3), "cpu_s": round(cpu, 2),
                        "per_s": round(args.postbacks / wall, 1), "target_per_s": APPLY_TARGET,
                        "ok": args.postbacks / wall >= APPLY_TARGET}
        print(f"apply: {out['apply']['per_s']:.0f} postbacks/s", flush=True)
        snapshot = tmp / "applied.db"
        ledger.backup(snapshot)
        ledger.close()

        # -- the panel stage, once per concurrency, each from the same applied ledger ----------
        out["panel"] = []
        for i, concurrency in enumerate(concurrencies):
            cfg = make_install(tmp / f"c{concurrency}", fake.url, concurrency)
            shutil.copyfile(snapshot, cfg.ledger_path)
            stage = panel_stage(cfg, fake, latency_s, concurrency, args.postbacks)
            stage["ok"] = None if stage["wall_over_ideal"] is None else stage["wall_over_ideal"] <= PANEL_TARGET
            out["panel"].append(stage)
            print(f"panel c={concurrency}: {stage['wall_s']:.1f} s for {stage['calls']} calls"
                  f" (ideal {stage['ideal_s']:.1f} s, x{stage['wall_over_ideal']})", flush=True)
            if i == len(concurrencies) - 1:  # the mail stage once, on the last synced ledger
                ledger = Ledger(cfg.ledger_path)
                mail, wall, cpu = timed(send_outbox, ledger, cfg, now())
                files = len(list(cfg.resolve(cfg.email.maildir).glob("*.eml")))
                out["mail"] = {**mail, "eml_files": files, "wall_s": round(wall, 3), "cpu_s": round(cpu, 2),
                               "per_s": round(mail["sent"] / wall, 1) if wall else None}
                print(f"mail: {mail['sent']} emails in {wall:.1f} s", flush=True)
                checked, broken = timed(ledger.verify_audit)[0]
                out["audit"] = {"rows": checked, "first_broken": broken}
                ledger.close()

        # -- the sequential baseline ---------------------------------------------------------
        if args.baseline:
            cfg = make_install(tmp / "sequential", fake.url, 1)
            ledger = Ledger(cfg.ledger_path)
            fill_inbox(ledger, make_rows(args.baseline, first=args.postbacks))
            apply_inbox(ledger, cfg, now())
            ledger.close()
            seq = panel_stage(cfg, fake, latency_s, 1, args.baseline)
            out["sequential"] = seq
            print(f"sequential: {seq['wall_s']:.1f} s for {args.baseline} subscriptions", flush=True)
            best = min(out["panel"], key=lambda s: s["per_subscription_ms"])
            out["speedup"] = {
                "concurrency": best["concurrency"],
                "sequential_ms_per_subscription": seq["per_subscription_ms"],
                "concurrent_ms_per_subscription": best["per_subscription_ms"],
                "ratio": round(seq["per_subscription_ms"] / best["per_subscription_ms"], 1),
            }
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(out: dict) -> str:
    lines = []
    p = out["params"]
    lines.append(f"iptvsync process benchmark: {p['postbacks']} postbacks, panel latency {p['latency_ms']} ms/call,"
                 f" fake panel in a {p['fake']}, {out['machine']['cpus']} CPU(s),"
                 f" Python {out['machine']['python']}, SQLite {out['machine']['sqlite']}")
    lines.append("")
    rows = [("stage", "work", "wall s", "rate", "vs target")]
    a = out["apply"]
    rows.append(("apply (apply_inbox)", f"{a['postbacks']} postbacks", f"{a['wall_s']:.2f}", f"{a['per_s']:.0f}/s",
                 f"≥ {a['target_per_s']:.0f}/s: {'OK' if a['ok'] else 'MISSED'}"))
    for s in out["panel"]:
        verdict = "n/a" if s["ok"] is None else "OK" if s["ok"] else "MISSED"
        rows.append((f"panel, max_concurrency {s['concurrency']}", f"{s['subscriptions']} subs, {s['calls']} calls",
                     f"{s['wall_s']:.2f}", f"{s['calls_per_s']:.0f} calls/s",
                     f"ideal {s['ideal_s']:.2f} s, x{s['wall_over_ideal']} (≤ {PANEL_TARGET}): {verdict}"))
    if "mail" in out:
        m = out["mail"]
        rows.append(("mail (maildir)", f"{m['sent']} emails", f"{m['wall_s']:.2f}", f"{m['per_s']:.0f}/s", ""))
    if "sequential" in out:
        s = out["sequential"]
        rows.append(("panel, max_concurrency 1", f"{s['subscriptions']} subs, {s['calls']} calls",
                     f"{s['wall_s']:.2f}", f"{s['calls_per_s']:.0f} calls/s",
                     f"ideal {s['ideal_s']:.2f} s, x{s['wall_over_ideal']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for s in out["panel"]:
        fake_cpu = f", fake {s['fake_cpu_s']} s" if s["fake_cpu_s"] is not None else ""
        lines.append(f"panel c={s['concurrency']}: {s['calls_per_subscription']} calls/subscription "
                     f"{s['calls_by_action']}, {s['per_subscription_ms']} ms/subscription, "
                     f"peak {s['max_inflight']} calls in flight, CPU: client {s['client_cpu_s']} s{fake_cpu}")
    for s in [*out["panel"], *([out["sequential"]] if "sequential" in out else [])]:
        t = s["ledger"]
        lines.append(f"ledger during panel c={s['concurrency']}: {t['transactions']} write transactions,"
                     f" COMMIT {t['commit_ms_avg']} ms avg ({t['commit_s']} s in all), wait for the write lock"
                     f" {t['lock_wait_ms_avg']} ms avg, write lock held {t['write_lock_busy']:.0%} of the wall time")
    if "speedup" in out:
        sp = out["speedup"]
        lines.append(f"speed-up per subscription, c={sp['concurrency']} vs c=1: "
                     f"{sp['sequential_ms_per_subscription']} ms / {sp['concurrent_ms_per_subscription']} ms"
                     f" = x{sp['ratio']}")
    if "audit" in out:
        broken = out["audit"]["first_broken"]
        state = "valid" if broken is None else f"BROKEN at row {broken}"
        lines.append(f"audit chain: {out['audit']['rows']} rows, {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Exit code 1 when a target is missed (apply ≥ 2000/s, panel ≤ 1.5x ideal).")
    parser.add_argument("--postbacks", type=int, default=10_000, help="backlog size (default 10000)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="fake panel latency per call (default 50)")
    parser.add_argument("--concurrency", default="32",
                        help="max_concurrency of the panel stage; a comma list runs each (default 32)")
    parser.add_argument("--baseline", type=int, default=200,
                        help="subscriptions for the sequential (max_concurrency 1) baseline; 0 skips it")
    parser.add_argument("--fake-in-process", action="store_true",
                        help="run the fake panel in this process (shares the GIL with the client)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    out = run(args)
    print()
    print(report(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.out}")
    missed = not out["apply"]["ok"] or any(s["ok"] is False for s in out["panel"])
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
