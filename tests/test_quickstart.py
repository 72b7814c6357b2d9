"""The README's first command, as a newcomer runs it: init, serve --process-every, simulate."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from support.install import wait_for


def run(folder: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iptvsync", *args], cwd=folder, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_simulated_purchase_becomes_a_dry_run_line_and_an_email(tmp_path):
    assert run(tmp_path, "init").returncode == 0
    config = (tmp_path / "config.toml").read_text()
    (tmp_path / "config.toml").write_text(config.replace("port = 8080", "port = 0", 1))
    server = subprocess.Popen([sys.executable, "-m", "iptvsync", "serve", "--process-every", "0.5"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = None
        while url is None:
            line = server.stderr.readline()
            assert line, "serve exited before listening"
            match = re.search(r"iptvsync receiver on (http://\S+)", line)
            url = match.group(1) if match else None
        postback_path = re.search(r'^path = "(/monetizze/postback/[^"]+)"', config, re.M).group(1)
        sim = run(tmp_path, "simulate", "purchase", "--email", "maria@example.com", "--url", url + postback_path)
        assert sim.returncode == 0 and "HTTP 200" in sim.stdout, sim.stderr
        emails = wait_for(lambda: list((tmp_path / "mail").glob("*.eml")) if (tmp_path / "mail").exists() else [])
        assert len(emails) == 1 and b"maria@example.com" in emails[0].read_bytes()
        calls = [json.loads(x) for x in (tmp_path / "dry-run-main.log").read_text().splitlines()]
        assert [c["call"] for c in calls] == ["create"] and calls[0]["enabled"] is True
        # while it runs, on the port it took (the config says 0: any free one)
        status = subprocess.run([sys.executable, "-m", "iptvsync", "status", "--json"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "IPTVSYNC_STATUS_RECEIVER_URL": url})
        assert status.returncode == 0 and json.loads(status.stdout)["facts"]["inbox_pending"] == 0, status.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0
    stopped = run(tmp_path, "status")  # and once it is stopped, status says so
    assert stopped.returncode == 1 and "the receiver does not answer" in stopped.stderr
