"""A real ``iptvsync admin serve --port 0`` process, and a real browser (Debian's chromium,
driven by Playwright: ``playwright install`` cannot download its own here)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from support.install import wait_for


class Console:
    def __init__(self, config: Path):
        self.log_path = config.parent / "admin-serve.log"
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "iptvsync", "--config", str(config), "admin", "serve", "--port", "0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file)
        self.url = wait_for(self._announced_url, "the admin console to announce its URL")

    def _announced_url(self) -> str | None:
        match = re.search(r"iptvsync admin console on (\S+)", self.log())
        if not match and self.proc.poll() is not None:
            raise AssertionError(f"iptvsync admin serve exited {self.proc.returncode}:\n{self.log()}")
        return match.group(1) if match else None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
