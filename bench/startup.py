"""How long an operator waits for a read-only command, and where the time goes.

    .venv/bin/python bench/startup.py                       # a fresh install on an XUI.one panel
    .venv/bin/python bench/startup.py --panel dry-run       # ... on the default dry-run panel
    .venv/bin/python bench/startup.py --config bench/results/scale-100000/config.toml --runs 15
    .venv/bin/python bench/startup.py --python /tmp/prod/bin/python   # a production install:
        # python3 -m venv /tmp/prod && /tmp/prod/bin/pip install .   (not editable, as the guide does)

For each command it runs the installed ``iptvsync …`` script (what an operator types; ``python
-m iptvsync`` when there is none) ``--runs`` times (after one warm-up) and prints
the median and the best wall time, like hyperfine; then, for each, the modules whose import took
longest (``python -X importtime``, cumulative µs). The baseline is ``python -c pass`` with the
same interpreter and site-packages: what any command costs before iptvsync's first import.
``--python`` runs the commands with another interpreter: the development venv's editable
install adds an import hook to every start (~10 ms, ``python -c pass`` included) that an
install made as docs/pt-BR/guia-de-instalacao.md makes it (``pip install /opt/iptvsync``) has not.
A fresh install is switched to ``--panel`` (default ``xui-admin``, what a shop runs): reading
the config imports the panel's adapter, so the dry-run default alone would hide its imports.
Goal: ``status``, ``subs show``, ``logs --email`` <= 150 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MS = 150.0


def timed(argv: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120)  # warm-up: page cache, pyc files
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, timeout=120)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def slowest_imports(argv: list[str], cwd: Path, top: int) -> list[tuple[int, str]]:
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}).stderr  # -X importtime, for a script too
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if len(name) - len(name.lstrip()) <= 3:  # top-level and first-level imports only
                rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="an install's config.toml (default: a fresh `iptvsync init`)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--panel", default="xui-admin", help="the fresh install's panel kind (default xui-admin)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the install to time"
                        " (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iptvsync-startup-") as tmp:
        if args.config is None:
            subprocess.run([args.python, "-m", "iptvsync", "init"], cwd=tmp, capture_output=True, check=True)
            config = Path(tmp) / "config.toml"
            if args.panel != "dry-run":  # never called: the commands timed here make no panel call
                config.write_text(config.read_text().replace('kind = "dry-run"', f'kind = "{args.panel}"', 1)
                                  .replace('url = ""', 'url = "http://127.0.0.1:9/access"', 1))
                with (Path(tmp) / ".env").open("a") as env:
                    env.write("PANEL_MAIN_API_KEY=bench\n")
        else:
            config = args.config.resolve()
        cwd = config.parent
        script = Path(args.python).with_name("iptvsync")  # what an operator types, when installed
        base = [*([str(script)] if script.exists() else [args.python, "-m", "iptvsync"]), "--config", str(config)]
        commands = {"python -c pass (baseline)": [args.python, "-c", "pass"],
                    "status": [*base, "status"], "subs show 1": [*base, "subs", "show", "1"],
                    "logs --email": [*base, "logs", "--email", "nobody@example.com"],
                    "process (quiet)": [*base, "process"]}
        results = {}
        for name, argv in commands.items():
            results[name] = timed(argv, cwd, args.runs)
            print(f"{name:28} median {results[name][0]:6.0f} ms   best {results[name][1]:6.0f} ms")
        for name in ("status", "subs show 1", "logs --email"):
            print(f"\n{name}: slowest imports (cumulative µs)")
            for micros, module in slowest_imports(commands[name], cwd, args.top):
                print(f"  {micros:8,}  {module}")
    missed = [n for n in ("status", "subs show 1", "logs --email") if results[n][0] > GOAL_MS]
    print(f"\ngoal <= {GOAL_MS:.0f} ms (median): {'PASS' if not missed else 'MISS: ' + ', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
