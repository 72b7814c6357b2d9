"""Service files rendered for *this* install: systemd units (serve, timers) and Litestream.

The templates live in ``iptvsync/data/deploy/`` with ``@NAME@`` placeholders. Rendering reads
the loaded config, so the units name the real config file, the ledger's folder (the only place
a sandboxed unit may write, with the maildir and the backups), and the executable of the venv
iptvsync runs from.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..config import Config
from ..errors import IptvsyncError

#: folders that ``ProtectHome=yes`` hides from a unit
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))


@dataclass(frozen=True)
class Job:
    """A oneshot service and the timer that starts it."""

    name: str
    description: str
    commands: tuple[str, ...]  # iptvsync sub-commands, one ExecStart= each
    timeout: str
    calendar: str  # OnCalendar=
    when: str  # the same, for people
    delay_s: int = 0  # RandomizedDelaySec=
    persistent: bool = True  # catch up a run missed while the machine was off


JOBS = (
    Job("iptvsync-process", "iptvsync process: apply postbacks, sync panels, send emails", ("process",),
        "10min", "*-*-* *:*:00", "every minute", persistent=False),
    Job("iptvsync-reconcile", "iptvsync reconcile: missed Monetizze sales (last 2 days)",
        ("reconcile monetizze --since 2d",), "15min", "*-*-* *:00/30:00", "every 30 minutes", 60),
    Job("iptvsync-reconcile-daily", "iptvsync daily reconcile: Monetizze 35 days + panel drift",
        ("reconcile monetizze --since 35d", "reconcile panel --fix"), "15min", "*-*-* 02:40:00", "daily 02:40",
        300),
    Job("iptvsync-backup", "iptvsync nightly online backup of the ledger (dated, rotated)",
        ("backup @BACKUP_DIR@ --keep @KEEP@",), "15min", "*-*-* 03:15:00", "daily 03:15", 300),
    Job("iptvsync-status", "iptvsync status: fails when the install is unhealthy", ("status",), "5min",
        "*-*-* *:00/5:00", "every 5 minutes", persistent=False),
)

#: jobs that need the Monetizze API token
NEEDS_CONSUMER_KEY = ("iptvsync-reconcile", "iptvsync-reconcile-daily")


@dataclass(frozen=True)
class Rendered:
    name: str
    text: str


def template(name: str) -> str:
    return resources.files("iptvsync").joinpath(f"data/deploy/{name}").read_text("utf-8")


def executable(name: str = "iptvsync") -> Path:
    """``name`` in the venv this Python runs from, else on PATH (an absolute path: systemd needs one)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside.absolute()
    found = shutil.which(name)
    if found is None:
        raise IptvsyncError(f"cannot find the {name} executable next to {sys.executable} or on PATH")
    return Path(found).absolute()


def default_backup_dir(cfg: Config) -> Path:
    return cfg.ledger_path.parent / "backups"


def writable_paths(cfg: Config, backup_dir: Path) -> list[str]:
    """The ledger's folder (db, -wal/-shm, lock, dry-run state), the maildir and the backups;
    a folder already inside another is left out, optional ones are prefixed with ``-``."""
    data_dir = cfg.ledger_path.parent.absolute()
    wanted = [(data_dir, False), (backup_dir.absolute(), True)]
    if cfg.email.backend == "maildir":
        wanted.append((cfg.resolve(cfg.email.maildir).absolute(), True))
    kept: list[tuple[Path, bool]] = []
    for path, optional in wanted:
        if not any(path == k or path.is_relative_to(k) for k, _ in kept):
            kept.append((path, optional))
    return [("-" if optional else "") + str(path) for path, optional in kept]


def _under_home(paths: list[Path]) -> bool:
    return any(p.is_relative_to(h) for p in paths for h in HOME_DIRS)


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def systemd_units(cfg: Config, *, user: str = "iptvsync", group: str | None = None, keep: int = 14,
                  backup_dir: Path | None = None, alert_email: str | None = None,
                  iptvsync_bin: Path | None = None, admin: bool = False) -> list[Rendered]:
    """The serve service, the job services and their timers (and the alert unit, and the admin
    console's service, when asked)."""
    exe = iptvsync_bin or executable()
    backup_dir = (backup_dir or default_backup_dir(cfg)).absolute()
    data_dir = cfg.ledger_path.parent.absolute()
    # The receiver binds a privileged port itself only when it terminates TLS on 443 (or 80).
    caps = "CAP_NET_BIND_SERVICE" if cfg.receiver.port and cfg.receiver.port < 1024 else ""
    common = {
        "CONFIG": str(cfg.path), "USER": user, "GROUP": group or user, "DATA_DIR": str(data_dir),
        "IPTVSYNC": str(exe), "BACKUP_DIR": f"{backup_dir}/", "KEEP": str(keep),
        "ALERT_EMAIL": alert_email or "",
    }
    sandbox = _fill(template("sandbox.inc"), {
        "RW_PATHS": " ".join(writable_paths(cfg, backup_dir)),
        # a venv, config or ledger under /home or /root must stay readable
        "PROTECT_HOME": "read-only" if _under_home([exe, cfg.path, data_dir]) else "yes",
    })
    on_failure = "OnFailure=iptvsync-alert@%n.service\n" if alert_email else ""
    units = [Rendered("iptvsync-serve.service",
                      _fill(template("iptvsync-serve.service"),
                            {**common, "SANDBOX": _fill(sandbox, {"CAPS": caps})}))]
    job_sandbox = _fill(sandbox, {"CAPS": ""})
    for job in JOBS:
        if job.name in NEEDS_CONSUMER_KEY and not cfg.secrets.consumer_key:
            continue
        exec_lines = "\n".join(f"ExecStart={exe} --config {cfg.path} {_fill(c, common)}" for c in job.commands)
        values = {**common, "NAME": job.name, "DESCRIPTION": job.description, "EXEC": exec_lines,
                  "TIMEOUT": job.timeout, "CALENDAR": job.calendar, "WHEN": job.when, "DELAY": str(job.delay_s),
                  "PERSISTENT": "true" if job.persistent else "false", "ON_FAILURE": on_failure,
                  "SANDBOX": job_sandbox}
        units.append(Rendered(f"{job.name}.service", _fill(template("iptvsync-job.service"), values)))
        units.append(Rendered(f"{job.name}.timer", _fill(template("iptvsync-job.timer"), values)))
    if admin:  # the console binds a high loopback port: no capability
        units.append(Rendered("iptvsync-admin.service",
                              _fill(template("iptvsync-admin.service"), {**common, "SANDBOX": job_sandbox})))
    if alert_email:
        units.append(Rendered("iptvsync-alert@.service",
                              _fill(template("iptvsync-alert@.service"), {**common, "SANDBOX": job_sandbox})))
    return units


def litestream_files(cfg: Config, *, replica_dir: Path, config_out: Path, user: str = "iptvsync",
                     group: str | None = None, litestream_bin: Path | None = None) -> list[Rendered]:
    """``litestream.yml`` replicating the ledger to ``replica_dir``, and its service unit."""
    exe = litestream_bin or executable("litestream")
    data_dir = cfg.ledger_path.parent.absolute()
    values = {"CONFIG": str(cfg.path), "LEDGER": str(cfg.ledger_path.absolute()), "REPLICA": str(replica_dir),
              "USER": user, "GROUP": group or user, "LITESTREAM": str(exe),
              "LITESTREAM_CONFIG": str(config_out.absolute())}
    sandbox = _fill(template("sandbox.inc"), {
        # "-": a replica folder not made yet must not stop the unit (the note in `deploy litestream`)
        "RW_PATHS": f"{data_dir} -{replica_dir.absolute()}",
        "PROTECT_HOME": "read-only" if _under_home([exe, data_dir, replica_dir]) else "yes", "CAPS": ""})
    return [Rendered(config_out.name, _fill(template("litestream.yml"), values)),
            Rendered("iptvsync-litestream.service",
                     _fill(template("iptvsync-litestream.service"), {**values, "SANDBOX": sandbox}))]


def preflight(cfg: Config, user: str) -> list[str]:
    """What would stop the units at run time on this machine, as notes for the operator."""
    import pwd

    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return [f"user {user} does not exist: useradd --system --home-dir {cfg.ledger_path.parent} "
                f"--create-home --shell /usr/sbin/nologin {user}"]
    notes = []
    for path in (cfg.ledger_path.parent, cfg.path, cfg.env_path):
        if path.exists() and path.stat().st_uid != account.pw_uid:
            notes.append(f"{path} is not owned by {user}: chown -R {user}: {cfg.ledger_path.parent}")
            break
    return notes


def write_all(files: list[Rendered], folder: Path) -> list[tuple[Path, str]]:
    """Write each file into ``folder``; returns (path, "wrote" | "unchanged")."""
    from ..fsutil import write_atomically

    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for f in files:
        target = folder / f.name
        if target.exists() and target.read_text("utf-8") == f.text:
            done.append((target, "unchanged"))
            continue
        try:
            write_atomically(target, f.text.encode("utf-8"))
            target.chmod(0o644)
        except OSError as exc:
            raise IptvsyncError(f"cannot write {target}: {exc.strerror or exc}") from None
        done.append((target, "wrote"))
    return done
