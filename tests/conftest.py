"""Tiny shared fixtures: a clean environment, a temp install (config + .env + ledger)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support.install import write_install
from support.receiver import Receiver

ENV_PREFIXES = ("IPTVSYNC_", "MONETIZZE_", "PANEL_", "SMTP_")
#: how the test run itself is asked to behave (support/binaries.py, support/rig.py), not settings
RUN_SWITCHES = ("IPTVSYNC_REQUIRE_SYSTEM_TESTS", "IPTVSYNC_RIG_TESTS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No stray setting from the developer's shell may leak into a test."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES) and key not in RUN_SWITCHES:
            monkeypatch.delenv(key)


@pytest.fixture
def install(tmp_path) -> Path:
    """A ready install on the embedded defaults (dry-run panel, maildir); returns config.toml."""
    return write_install(tmp_path / "install")


@pytest.fixture
def cfg(install):
    from iptvsync.config import load_config

    return load_config(install)


@pytest.fixture
def start():
    """``start(config, *serve_args)`` runs a receiver; whatever is still running is killed after
    the test (tests about a clean exit stop theirs with SIGTERM themselves)."""
    running: list[Receiver] = []

    def _start(config: Path, *args: str) -> Receiver:
        running.append(Receiver(config, *args))
        return running[-1]

    yield _start
    for receiver in running:
        receiver.stop(signal.SIGKILL)


@pytest.fixture
def receiver(start, install) -> Receiver:
    return start(install)


@pytest.fixture
def ledger(cfg):
    """The install's ledger, opened (and migrated) as the commands open it."""
    from iptvsync.ledger.db import Ledger

    led = Ledger(cfg.ledger_path)
    yield led
    led.close()


def pytest_terminal_summary(terminalreporter):
    """One line naming the system binaries whose tests skipped, and the command installing them."""
    from support import binaries, rig

    reasons = [report.longrepr[2] for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple)]  # the workers' skips too, under pytest-xdist
    for line in (binaries.summary(binaries.counted(reasons)), rig.summary(reasons)):
        if line:
            terminalreporter.write_line(line, yellow=True)


@pytest.fixture
def receiver_up(monkeypatch):
    """`status` sees a receiver that answers (support/healthz.py), for tests of its other checks."""
    from support.healthz import HealthyReceiver

    with HealthyReceiver() as url:
        monkeypatch.setenv("IPTVSYNC_STATUS_RECEIVER_URL", url)
        yield url
