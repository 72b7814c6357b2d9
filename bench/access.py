"""Time to access: a buyer's postback → line enabled on the panel → access email accepted by SMTP
and the access message acknowledged by a WhatsApp gateway.

    .venv/bin/python bench/access.py                         # 40 buyers during a 5,000-line wave
    .venv/bin/python bench/access.py --buyers 20 --wave 2000 --latency-ms 50

What runs, all on loopback:

* a fake XUI.one admin panel (``tests/support/xui.py``) in a process of its own, answering every
  call in ``--latency-ms`` (50 ms), with an exact-username index (``bench/process.py``);
* a real SMTP server (aiosmtpd, ``tests/support/smtp.py``) that stamps when it accepts each
  message;
* a fake Evolution API (``tests/support/whatsapp.py``) answering each send after
  ``--wa-latency-ms`` (700 ms: the number lookup and the send of a real Baileys instance), with
  ``[whatsapp] per_minute = 60, jitter_ms = 500`` (one buyer every ``--gap-s`` 1.5 s fits);
  every buyer, and every line of the wave, has a valid mobile number, so the wave's expiry
  notices compete for the gateway with the fresh access messages;
* ``python -m iptvsync serve --process-on-postback --process-every 60``: the receiver, which
  stores postbacks only, and its process thread, woken as soon as a postback is committed.

Before serve starts, ``--wave`` (5,000) subscriptions are paid 34 days ago through the
project's own apply and sync (panel latency 0 while setting up): their lines are enabled on the
fake panel and all expire at once, so the first run sweeps them and the wave of disables (bulk
work, ``[bulk]`` budget per run) runs while the buyers pay. Then ``--buyers`` postbacks (new
purchases) are posted one every ``--gap-s`` seconds; for each it records when the panel first
answered an enabled create/edit for that buyer's line and when the SMTP server accepted the
access email, and prints p50/p99 of both from the moment the POST was sent.

**Baseline, in the same run**: what the buyer waited before, cron's ``process`` every minute.
``serve --no-process-on-postback --process-every 60`` runs ``process`` on its clock only; its
``--baseline-buyers`` (10) buyers pay one every ``60 / N`` seconds, so they meet every phase of
the minute, as real payments meet cron's. It runs without the wave: the wave only delays work,
so leaving it out is the baseline's best case, never ours. ``--baseline-buyers 0`` skips it.

Goal: email p99 <= 3 s, WhatsApp acknowledged p99 <= 3 s. Results in ``bench/results/access.json``;
exit code 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from process import IndexedXuiAdmin, listen_backlog  # noqa: E402
from support.install import BASE_TOML, write_install  # noqa: E402
from support.postbacks import payload  # noqa: E402
from support.receiver import Receiver  # noqa: E402
from support.smtp import smtp_server  # noqa: E402
from support.whatsapp import FakeEvolution  # noqa: E402

from iptvsync.clock import now  # noqa: E402
from iptvsync.config import load_config  # noqa: E402
from iptvsync.engine.apply import apply_inbox  # noqa: E402
from iptvsync.engine.runner import build_panels  # noqa: E402
from iptvsync.engine.sync import sync_panels  # noqa: E402
from iptvsync.ledger.db import Ledger  # noqa: E402
from iptvsync.ledger.inbox import inbox_row, store_rows  # noqa: E402
from iptvsync.ledger.queue import MailStatus  # noqa: E402
from iptvsync.monetizze.form import build_form  # noqa: E402
from iptvsync.monetizze.postback import parse  # noqa: E402

FORM = "application/x-www-form-urlencoded"
PATH = "/monetizze/postback/s3cr3tpath"
API_KEY = "bench-api-key"
RESULTS = ROOT / "bench" / "results" / "access.json"
GOAL_P99_S = 3.0


class StampedXuiAdmin(IndexedXuiAdmin):
    """Remembers, per line notes ("iptvsync sub:<code>"), when a write first left it enabled."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.enabled_at: dict[str, float] = {}
        self.disables = 0

    def store(self, row: dict) -> dict:
        out = super().store(row)
        notes = str(row.get("admin_notes") or "")
        if int(row.get("enabled") or 0) == 1:
            self.enabled_at.setdefault(notes, time.time())
        else:
            self.disables += 1
        return out


def panel_process(conn, latency_s: float) -> None:
    listen_backlog()
    fake = StampedXuiAdmin(api_key=API_KEY).start()
    conn.send(fake.url)
    while True:
        command, value = conn.recv()
        if command == "latency":
            fake.latency_s = value
            conn.send(None)
        elif command == "stamps":
            with fake._lock:
                conn.send({"enabled_at": dict(fake.enabled_at), "disables": fake.disables,
                           "calls": len(fake.calls)})
        elif command == "stop":
            fake.stop()
            conn.send(None)
            return


class StampedEvolution(FakeEvolution):
    """Remembers when it acknowledged each number's first message."""

    def __init__(self):
        super().__init__()
        self.acked_at: dict[str, float] = {}

    def route(self, method, path, request):
        status, answer, delivered = super().route(method, path, request)
        if delivered is not None:
            self.acked_at.setdefault(delivered["to"], time.time())
        return status, answer, delivered


def install(folder: Path, panel_url: str, smtp_port: int, concurrency: int, gateway: StampedEvolution) -> Path:
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{panel_url}"\n'
                             f'max_concurrency = {concurrency}\ntimeout_s = 30')
    toml = toml.replace('backend = "maildir"', 'backend = "smtp"') + (
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\nsmtp_security = "none"\ntimeout_s = 10\n')
    toml += (f'\n[whatsapp]\ngateway = "evolution"\nurl = "{gateway.url}"\ninstance = "{gateway.instance}"\n'
             'channels = ["email", "whatsapp"]\nper_minute = 60\njitter_ms = 500\ntimeout_s = 10\n')
    return write_install(folder, toml, env={"PANEL_MAIN_API_KEY": API_KEY, "WHATSAPP_TOKEN": gateway.apikey})


def buyer(i: int, paid) -> dict:
    p = payload(2, sale=f"6{i:08d}", subscription=f"5{i:08d}", email=f"buyer{i}@example.com",
                paid=paid.strftime("%Y-%m-%d %H:%M:%S"))
    p["comprador"]["telefone"] = f"(11) 9{81000000 + i}"
    return p


def buyer_number(i: int) -> str:
    return f"55119{81000000 + i}"


def make_wave(cfg, size: int) -> None:
    """``size`` subscriptions paid 34 days ago, lines enabled on the panel: all expired now."""
    ledger = Ledger(cfg.ledger_path)
    paid = now() - timedelta(days=34)
    rows = []
    for i in range(size):
        p = payload(2, sale=f"7{i:08d}", subscription=f"8{i:08d}", email=f"wave{i}@example.com",
                    paid=paid.strftime("%Y-%m-%d %H:%M:%S"))
        p["comprador"]["telefone"] = f"(21) 9{87000000 + i}"
        body = build_form(p)
        rows.append(inbox_row(parse(body, FORM)[1], body, content_type=FORM, remote_addr="127.0.0.1"))
    with ledger.tx() as conn:
        store_rows(conn, rows)
    apply_inbox(ledger, cfg, paid + timedelta(minutes=5))  # applied back then: lines wanted enabled
    panels = build_panels(cfg)
    while sync_panels(cfg.ledger_path, cfg, panels, paid + timedelta(minutes=6)).synced:
        pass
    with ledger.tx() as conn:  # their activation emails went out back then
        conn.execute("UPDATE outbox SET status = :s", {"s": MailStatus.SENT})
    ledger.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def run(args, *, buyers: int, wave: int, gap_s: float, serve_flags: tuple[str, ...]) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    panel = ctx.Process(target=panel_process, args=(child, args.latency_ms / 1000), daemon=True)
    panel.start()
    panel_url = parent.recv()
    out: dict = {"latency_ms": args.latency_ms, "wave": wave, "buyers": buyers, "gap_s": gap_s,
                 "concurrency": args.concurrency, "serve": " ".join(serve_flags)}
    with tempfile.TemporaryDirectory(prefix="iptvsync-access-") as tmp, smtp_server(tls="none") as smtp, \
            StampedEvolution() as gateway:
        gateway.latency_s = args.wa_latency_ms / 1000
        accepted: dict[str, float] = {}

        class Stamped(list):
            def append(self, item):
                for rcpt in item.rcpt_tos:
                    accepted.setdefault(rcpt, time.time())
                super().append(item)

        smtp.handler.received = Stamped()
        config = install(Path(tmp), panel_url, smtp.port, 16, gateway)  # setting up: no latency, more at once
        print(f"setting up a wave of {wave:,} expired lines ...", file=sys.stderr)
        parent.send(("latency", 0.0))
        parent.recv()
        t0 = time.monotonic()
        make_wave(load_config(config), wave)
        out["setup_s"] = round(time.monotonic() - t0, 1)
        config = install(Path(tmp), panel_url, smtp.port, args.concurrency, gateway)
        cfg = load_config(config)
        parent.send(("latency", args.latency_ms / 1000))
        parent.recv()
        server = Receiver(config, *serve_flags)
        try:
            url = server.url
            sent: dict[int, float] = {}
            session = requests.Session()
            for i in range(buyers):
                body = build_form(buyer(i, now() - timedelta(seconds=30)))
                sent[i] = time.time()
                reply = session.post(url + PATH, data=body, headers={"Content-Type": FORM}, timeout=30)
                assert reply.status_code == 200, reply.text
                time.sleep(gap_s)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(
                    [i for i in sent if f"buyer{i}@example.com" in accepted
                     and buyer_number(i) in gateway.acked_at]) < len(sent):
                time.sleep(0.1)
            parent.send(("stamps", None))
            stamps = parent.recv()
            acked = dict(gateway.acked_at)
            out["wave_whatsapp_during"] = sum(1 for to in acked if to.startswith("55219"))
        finally:
            # serve finishes the run in progress (the wave's bulk panel work) before exiting
            stopping = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                print(server.log()[-3000:], file=sys.stderr)
                server.stop(signal.SIGKILL)
                raise
            out["serve_stop_s"] = round(time.monotonic() - stopping, 1)
        ledger = Ledger(cfg.ledger_path)
        keys = {r["key"]: r for r in ledger.query("SELECT key, buyer_email FROM subscriptions")}
        ledger.close()
    parent.send(("stop", None))
    parent.recv()
    panel.join(timeout=10)
    line_s, mail_s, whatsapp_s, missing = [], [], [], 0
    for i, t_sent in sent.items():
        enabled = stamps["enabled_at"].get(f"iptvsync sub:5{i:08d}")
        mailed = accepted.get(f"buyer{i}@example.com")
        whatsapp = acked.get(buyer_number(i))
        if enabled is None or mailed is None or whatsapp is None or f"sub:5{i:08d}" not in keys:
            missing += 1
            continue
        line_s.append(enabled - t_sent)
        mail_s.append(mailed - t_sent)
        whatsapp_s.append(whatsapp - t_sent)
    out.update(missing=missing, wave_disables_during=stamps["disables"], panel_calls=stamps["calls"])
    for name, values in (("line", line_s), ("email", mail_s), ("whatsapp", whatsapp_s)):
        out[name] = ({"p50_s": round(statistics.median(values), 3), "p99_s": round(percentile(values, 99), 3),
                      "max_s": round(max(values), 3)} if values else None)
    out["ok"] = (bool(mail_s) and not missing and out["email"]["p99_s"] <= GOAL_P99_S
                 and out["whatsapp"]["p99_s"] <= GOAL_P99_S)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--buyers", type=int, default=40)
    parser.add_argument("--wave", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--gap-s", type=float, default=1.5, help="seconds between two buyers' postbacks")
    parser.add_argument("--concurrency", type=int, default=4, help="[panels.main] max_concurrency (default 4)")
    parser.add_argument("--wa-latency-ms", type=float, default=700.0,
                        help="the fake WhatsApp gateway's answer time per send (default 700)")
    parser.add_argument("--baseline-buyers", type=int, default=10,
                        help="buyers of the cron-every-minute baseline, spread over one minute (0: skip it)")
    args = parser.parse_args(argv)
    out = run(args, buyers=args.buyers, wave=args.wave, gap_s=args.gap_s,
              serve_flags=("--process-on-postback", "--process-every", "60"))
    if args.baseline_buyers:
        print(f"baseline: {args.baseline_buyers} buyers, process every 60 s only ...", file=sys.stderr)
        out["baseline"] = run(args, buyers=args.baseline_buyers, wave=0, gap_s=60 / args.baseline_buyers,
                              serve_flags=("--no-process-on-postback", "--process-every", "60"))
    print(f"\n{args.buyers} buyers during a {args.wave:,}-line expiry wave; panel {args.latency_ms:.0f} ms per "
          f"call, max_concurrency {args.concurrency}")
    base = out.get("baseline")
    for name in ("line", "email", "whatsapp"):
        v = out[name]
        print(f"  postback -> {name:8}: " + (f"p50 {v['p50_s']:.2f} s  p99 {v['p99_s']:.2f} s  max {v['max_s']:.2f} s"
                                             if v else "none arrived"))
        if base and base[name] and v:
            b = base[name]
            print(f"    baseline (cron each minute, no wave): p50 {b['p50_s']:.1f} s  p99 {b['p99_s']:.1f} s"
                  f"  -> {b['p50_s'] / v['p50_s']:.0f}x sooner at p50, {b['p99_s'] / v['p99_s']:.0f}x at p99")
    print(f"  wave: {out['wave_disables_during']:,} of {args.wave:,} lines disabled meanwhile; "
          f"{out['missing']} buyer(s) without line, email or WhatsApp; {out['wave_whatsapp_during']:,} expiry"
          f" notices acknowledged on WhatsApp meanwhile (gateway {args.wa_latency_ms:.0f} ms per send)")
    print(f"  goal email and WhatsApp p99 <= {GOAL_P99_S:.0f} s: {'PASS' if out['ok'] else 'MISS'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
