"""The admin console on the 100,000-subscription shop of bench/scale.py: each page's server time
(p95 ≤ 100 ms) and search (≤ 50 ms), every list paging by key.

    .venv/bin/python bench/admin.py                  # the cached 100k ledger (bench/scale.py builds it)
    .venv/bin/python bench/admin.py --subs 2000      # a smaller shop (its own cached ledger)

Server time: the request through the real app (``create_app``) in-process with Flask's test
client, logged in as an owner: routing, the session and CSRF bookkeeping, the ``ops`` queries,
the templates; not the network or the proxy. Each page is requested ``--runs`` times after one
warm-up, in rounds (page a, b, c, a, b, c, …) so every page meets the machine's quick and slow
stretches alike. The ledger is copied first: the bench adds its operator and sessions to the
copy, never to the cache. Figures to ``bench/results/admin.json``; exit code 1 when a row misses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import scale  # noqa: E402

from iptvsync.admin import create_app  # noqa: E402
from iptvsync.config import load_config  # noqa: E402
from iptvsync.ledger.db import Ledger  # noqa: E402
from iptvsync.ops import operators, search  # noqa: E402

PASSWORD = "bench-password-1"
PAGE_GOAL_MS, SEARCH_GOAL_MS = 100, 50


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def shop_copy(subs: int) -> Path:
    source = scale.RESULTS / f"scale-{subs}"
    if not (source / "build.json").exists():
        print(f"building a {subs:,}-subscription ledger in {source} (cached for later runs)", file=sys.stderr)
        facts = scale.build(source, subs)
        (source / "build.json").write_text(json.dumps(facts, indent=2))
    target = scale.RESULTS / f"admin-{subs}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("backups"))
    return target / "config.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    cfg = load_config(shop_copy(args.subs))
    ledger = Ledger(cfg.ledger_path)  # migrates the copy: the console's tables and indexes
    operators.add(ledger, "bench", "owner", PASSWORD)
    sample = ledger.one("SELECT s.id, s.buyer_email, s.username, s.key, c.sale_code FROM subscriptions s"
                        " JOIN charges c ON c.subscription_id = s.id ORDER BY s.id DESC LIMIT 1 OFFSET 5000")
    name = ledger.one("SELECT buyer_name FROM subscriptions WHERE buyer_name IS NOT NULL LIMIT 1")
    held = ledger.one("SELECT MAX(id) AS id FROM inbox")["id"]
    client = create_app(cfg).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"usuario": "bench", "senha": PASSWORD, "csrf": token}).status_code == 303
    second_page = search.subscriptions(ledger, cfg)[-1]["id"]
    pages = {
        "Painel": "/",
        "Assinaturas (newest 50)": "/assinaturas",
        "Assinaturas, page 2 (by key)": f"/assinaturas?before={second_page}",
        "Assinaturas, state=active": "/assinaturas?state=active",
        "a subscription + timeline": f"/assinaturas/{sample['id']}",
        "search page: email": f"/assinaturas?q={sample['buyer_email']}",
        "Postbacks (newest 50)": "/postbacks",
        "Postbacks, status=applied": "/postbacks?status=applied",
        "a postback": f"/postbacks/{held}",
        "Registro (newest 50)": "/registro",
        "Registro by email": f"/registro?email={sample['buyer_email']}",
        "Operadores": "/operadores",
    }
    searches = {
        "search: email": sample["buyer_email"], "search: sale code": sample["sale_code"],
        "search: line username": sample["username"], "search: subscription code": sample["key"].split(":", 1)[1],
        "search: a part of a name (the one scan)": (name["buyer_name"] if name else "zz")[:6],
    }
    times: dict[str, list[float]] = {k: [] for k in [*pages, *searches]}
    for n in range(args.runs + 1):
        for what, path in pages.items():
            t0 = time.perf_counter()
            status = client.get(path).status_code
            if n:
                times[what].append((time.perf_counter() - t0) * 1000)
            assert status == 200, (what, status)
        for what, q in searches.items():
            t0 = time.perf_counter()
            found = search.subscriptions(ledger, cfg, q=q)
            if n:
                times[what].append((time.perf_counter() - t0) * 1000)
            assert found or "name" in what, what
    rows = []
    for what, values in times.items():
        goal = SEARCH_GOAL_MS if what.startswith("search:") else PAGE_GOAL_MS
        rows.append({"what": what, "p50_ms": round(statistics.median(values), 1), "p95_ms": round(p95(values), 1),
                     "goal_p95_ms": goal, "result": "PASS" if p95(values) <= goal else "MISS"})
    width = max(len(r["what"]) for r in rows)
    print(f"{args.subs:,} subscriptions, {args.runs} runs each, load average {os.getloadavg()[0]:.1f}")
    print(f"{'what':{width}}  result    p50     p95  | goal p95")
    for r in rows:
        print(f"{r['what']:{width}}  {r['result']:6} {r['p50_ms']:6.1f}  {r['p95_ms']:6.1f}  | {r['goal_p95_ms']} ms")
    scale.RESULTS.mkdir(parents=True, exist_ok=True)
    (scale.RESULTS / "admin.json").write_text(json.dumps({"subs": args.subs, "rows": rows,
                                                          "loadavg": os.getloadavg()}, indent=2))
    return 0 if all(r["result"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
