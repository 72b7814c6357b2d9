"""A real systemd to run the units under: PID 1 of a ``systemd-nspawn`` container.

The container boots a throw-away copy (``-x``) of a Debian minbase root file system made once
with ``debootstrap`` and cached under the temp folder (``$TMPDIR/iptvsync-rig/rootfs``, 1-2 min
the first time). It has its own network (``--private-network``: only its loopback), so nothing
it listens on meets the host's ports; iptvsync is installed in it from wheels built on the host
(``pip wheel``), so it needs no package registry either. Commands run inside by entering every
namespace of its PID 1 (``nsenter``): with no system bus on a host whose own PID 1 is not
systemd, ``machinectl`` cannot reach it (hence also ``--register=no --keep-unit``).

Needs root, ``systemd-nspawn`` (apt-get install -y systemd-container) and ``debootstrap``, and
is asked for with ``IPTVSYNC_RIG_TESTS=1``: building a root file system takes minutes, which CI
cannot be assumed to have, so ``IPTVSYNC_REQUIRE_SYSTEM_TESTS`` does not require it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SWITCH = "IPTVSYNC_RIG_TESTS"
INSTALL = "apt-get install -y systemd-container debootstrap"
CACHE = Path(os.environ.get("IPTVSYNC_RIG_DIR") or Path(tempfile.gettempdir()) / "iptvsync-rig")
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,procps,iproute2"
ROOT = Path(__file__).resolve().parents[2]
#: reasons rig tests skipped, this run (printed once at the end by conftest)
skipped: list[str] = []


def unavailable() -> str | None:
    """Why the rig cannot run here, or None."""
    if os.environ.get(SWITCH) != "1":
        return (f"the systemd rig runs only with {SWITCH}=1 (root, systemd-nspawn, debootstrap, and minutes to"
                " build a root file system once: not required in CI)")
    if os.geteuid() != 0:
        return "the systemd rig needs root"
    missing = [b for b in ("systemd-nspawn", "debootstrap", "nsenter") if not _which(b)]
    if missing:
        return f"the systemd rig needs {', '.join(missing)}: {INSTALL}"
    return None


def require() -> None:
    reason = unavailable()
    if reason:
        skipped.append(reason)
        pytest.skip(reason)


def summary(reasons: list[str] | None = None) -> str | None:
    """One line for the end of the run; ``reasons``: the run's skip reasons (from xdist's workers)."""
    found = skipped if reasons is None else [r.removeprefix("Skipped: ") for r in reasons if "systemd rig" in r]
    return f"tests/test_deploy_rig.py skipped: {found[0]}" if found else None


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"]))


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        yield


def _mirror() -> str:
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.sources")]:
        with contextlib.suppress(OSError):
            for word in source.read_text().split():
                if word.startswith(("http://", "https://")) and "security" not in word:
                    return word
    return "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached root file system, made by debootstrap the first time."""
    target = CACHE / "rootfs"
    with _locked("rootfs"):
        if not (target / "usr/lib/systemd/systemd").exists():
            partial = CACHE / "rootfs.partial"
            shutil.rmtree(partial, ignore_errors=True)
            suite = _os_release().get("VERSION_CODENAME") or "bookworm"
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(partial),
                            _mirror()], check=True, capture_output=True, timeout=1200)
            partial.rename(target)
    return target


def _os_release() -> dict:
    with contextlib.suppress(OSError):
        return dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().split("\n") if "=" in line)
    return {}


def wheelhouse() -> Path:
    """iptvsync and its dependencies as wheels (built from this tree each time: it changes)."""
    folder = CACHE / "wheels"
    with _locked("wheels"):
        for old in folder.glob("iptvsync-*.whl"):
            old.unlink()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(folder), f"{ROOT}[replica]"],
                       check=True, capture_output=True, timeout=600)
    return folder


class Rig:
    """A booted container: ``run`` commands in it, ``stop`` it."""

    def __init__(self, name: str, rootfs: Path, binds: dict[Path, str]):
        self.name = name
        self.cgroups = _cgroup_roots()
        args = ["systemd-nspawn", "-D", str(rootfs), "-x", "-b", f"--machine={name}", "--register=no",
                "--keep-unit", "--console=passive", "--private-network",
                *[f"--bind-ro={src}:{dst}" for src, dst in binds.items()], "--", "systemd.show_status=no"]
        # its own cgroup subtree (the host's PID 1 is not systemd: nspawn would write at the root)
        moves = "".join(f'mkdir -p {c}/{name} && echo $$ > {c}/{name}/cgroup.procs; ' for c in self.cgroups)
        self.log = CACHE / f"{name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["sh", "-c", moves + 'exec setsid "$@"', "sh", *args],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.leader = self._wait_up()

    def _wait_up(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            leader = self._leader()
            if leader:
                state = subprocess.run(["nsenter", "-t", str(leader), "-a", "systemctl", "is-system-running"],
                                       capture_output=True, text=True).stdout.strip()
                if state in ("running", "degraded"):
                    return leader
            time.sleep(0.2)
        raise AssertionError(f"systemd not up after {timeout}s ({state or 'no answer'})")

    def _leader(self) -> int | None:
        """The container's PID 1 (systemd), as the host sees it."""
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            for pid in children:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return None

    def run(self, script: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """``bash -lc script`` inside, as root, with a clean environment."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
             "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", "bash", "-lc", script],
            capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"in the rig, exit {result.returncode}: {script}\n{result.stdout}{result.stderr}")
        return result

    def wait_for(self, script: str, what: str, timeout: float = 60) -> str:
        """Poll ``script`` inside until it exits 0; its output."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.run(script, check=False)
            if result.returncode == 0:
                return result.stdout
            if time.monotonic() > deadline:
                raise AssertionError(f"in the rig, no {what} after {timeout}s:\n{result.stdout}{result.stderr}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            subprocess.run(["nsenter", "-t", str(self.leader), "-a", "systemctl", "poweroff", "--no-block"],
                           capture_output=True)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.terminate()  # the nspawn process this helper started, by its pid
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        for root in self.cgroups:  # the empty subtree nspawn left
            for folder in sorted(Path(root, self.name).glob("**/"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _cgroup_roots() -> list[str]:
    if Path("/proc/1/comm").read_text().strip() == "systemd":
        return []
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return ["/sys/fs/cgroup"]
    return [h for h in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified") if os.path.ismount(h)]


@contextlib.contextmanager
def booted(binds: dict[Path, str] | None = None) -> Iterator[Rig]:
    """A container booted from the cached root file system, stopped (and discarded) afterwards."""
    rig = Rig(f"iptvsync-rig-{os.getpid()}", rootfs(), binds or {})
    try:
        yield rig
    finally:
        rig.stop()
