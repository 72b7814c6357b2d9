"""Issue 17 item 7, the short-lived writers: every command that writes into the ledger holds its
shared lock (``<ledger>.in-use``) until it returns, so a ``restore`` or ``rekey`` never swaps or
rewrites the file under it; while one of those runs, each writer refuses at once, in one line,
and changes nothing. Read-only commands take no lock and keep working. And ``restore`` keeps the
whole current ledger aside (what its -wal holds, a damaged file too) before replacing it.

The lock holders are real processes; the ledgers are real files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import typer
from support.install import write_install
from support.ops import cli
from support.postbacks import deliver, payload
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger import db as ledger_db
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.lock import BUSY, lock_path

_register()

#: Every command, by what it does to the ledger. A new command must be placed here.
WRITES = {  # hold the shared lock until they return (``cli/app.writes``)
    "subs grant": ["--email", "new@example.com", "--product", "145388", "--days", "30", "--key", "g1"],
    "subs extend": ["1", "--days", "5", "--key", "e1"],
    "subs suspend": ["1"], "subs resume": ["1"], "subs cancel": ["1"], "subs resend": ["1"],
    "admin user add": ["ana", "--role", "owner", "--password-stdin"], "admin user passwd": ["ana", "--password-stdin"],
    "admin user remove": ["ana"], "admin user logout": ["ana"], "admin user totp": ["ana"],
    "subs retry": [], "subs import": ["--product", "145388", "--csv", "lines.csv"], "subs phones": ["--backfill"],
    "subs phone": ["1", "--clear"],
    "inbox retry": [], "inbox replay": ["1"], "inbox attach": ["1", "1"],
    "inbox prune": ["--older-than", "1d"],
    "reconcile monetizze": [], "reconcile panel": ["--fix"],
    "audit verify": [], "init": [], "notify test": ["whatsapp", "+5511987654321"],
    "simulate purchase": ["--live", "--email", "me@example.com"],
}
READS = {  # no lock: they work while a restore or rekey holds the ledger
    "status": [], "admin user list": [], "subs list": [], "subs show": ["1"], "logs": [], "inbox list": [],
    "inbox show": ["1"],
    "doctor": [], "backup": ["copy.db"], "mail alert": ["ops@example.com", "--unit", "x"],
}
OWN_LOCK = {"serve", "admin serve", "process", "restore", "rekey"}  # hold it for their run (shared or exclusive)
NO_LEDGER = {"deploy litestream", "deploy systemd", "mail test", "simulate cancel", "simulate dispute",
             "simulate purchase", "simulate refund", "simulate renewal"}  # simulate --live writes


def commands(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path)


def test_every_command_is_known_to_write_or_not():
    every = set(commands(typer.main.get_command(app)))
    placed = set(WRITES) | set(READS) | OWN_LOCK | NO_LEDGER
    assert every == placed, (every - placed, placed - every)


def bought(tmp_path: Path) -> Path:
    """An install with two buyers, their lines and emails; a CSV of one more line to import."""
    config = write_install(tmp_path / "install")
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    for i in range(2):
        deliver(ledger, payload(2, sale=f"5100000{i}", subscription=f"110437{i}", email=f"b{i}@example.com"))
    ledger.close()
    run_process(cfg)
    (config.parent / "lines.csv").write_text("email,product,username,paid_until\n"
                                             "c@example.com,145388,linha9,2027-01-05\n", encoding="utf-8")
    return config


HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
fcntl.flock(fd, getattr(fcntl, sys.argv[2]))
print("held", flush=True)
sys.stdin.read()  # until the test closes it
"""


@contextlib.contextmanager
def held(ledger_path: Path, mode: str):
    """Another process holding the ledger's lock: LOCK_EX as a restore does, LOCK_SH as a writer."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path(ledger_path)), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "held\n"
        yield
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def snapshot(folder: Path) -> tuple[list[str], list[str]]:
    """The ledger's content and the install's files (the -wal and -shm a reader makes aside)."""
    conn = sqlite3.connect(f"file:{folder / 'iptvsync.db'}?mode=ro", uri=True)
    try:
        dump = list(conn.iterdump())
    finally:
        conn.close()
    return dump, sorted(p.name for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm")))


def test_while_a_restore_holds_the_ledger_every_writer_refuses_in_one_line_and_changes_nothing(tmp_path):
    config = bought(tmp_path)
    folder, ledger_path = config.parent, load_config(config).ledger_path
    before = snapshot(folder)
    with held(ledger_path, "LOCK_EX"):
        for name, args in WRITES.items():
            result = cli(config, *name.split(), *args, timeout=60)
            assert result.returncode == 1, (name, result.returncode, result.stdout, result.stderr)
            assert result.stderr == f"error: {BUSY}\n", (name, result.stderr)
            assert snapshot(folder) == before, name
        for name, args in READS.items():  # the read-only ones take no lock: they answer meanwhile
            result = cli(config, *name.split(), *args, timeout=60)
            assert BUSY not in result.stderr and "Traceback" not in result.stderr, (name, result.stderr)
        assert cli(config, "subs", "list").returncode == 0
    assert cli(config, "subs", "suspend", "1").returncode == 0  # the restore is over: it works again


def test_each_writer_writes_only_while_holding_the_shared_lock_and_lets_go_when_done(tmp_path, monkeypatch):
    """Every write transaction of a writing command, probed from a second open of the lock file:
    the probe's exclusive lock must be refused (the command holds it shared), and granted again
    once the command has returned."""
    config = bought(tmp_path)
    ledger_path = load_config(config).ledger_path
    seen: list[bool] = []

    def locked_now() -> bool:
        fd = os.open(lock_path(ledger_path), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    tx = ledger_db.Ledger.tx

    @contextlib.contextmanager
    def probed(self):
        if self.path == ledger_path and self._depth == 0:
            seen.append(locked_now())
        with tx(self) as conn:
            yield conn

    monkeypatch.setattr(ledger_db.Ledger, "tx", probed)
    monkeypatch.chdir(config.parent)
    runner = CliRunner()
    for name, args in [("subs grant", WRITES["subs grant"]), ("subs extend", WRITES["subs extend"]),
                       ("subs suspend", ["1"]), ("subs resume", ["1"]), ("subs resend", ["1"]),
                       ("subs cancel", ["2"]), ("subs retry", []),
                       ("inbox retry", ["1"]), ("inbox replay", ["1"]), ("inbox prune", ["--older-than", "0d"]),
                       ("reconcile panel", ["--fix"]), ("audit verify", [])]:
        seen.clear()
        result = runner.invoke(app, ["--config", str(config), *name.split(), *args])
        assert result.exit_code == 0, (name, result.output, result.exception)
        assert seen and all(seen), (name, seen)  # it wrote, and only under the lock
        assert not locked_now(), name  # and let go of it when it returned


SLOW_GRANT = """
import subprocess, sys
from iptvsync.cli import _register, main
from iptvsync.ops import subs

real, (iptvsync, backup, config) = subs.grant, sys.argv[1:4]

def grant(*args, **kwargs):  # a restore and a rekey started while this grant runs
    for command in (["restore", backup, "--yes"], ["rekey"]):
        done = subprocess.run([iptvsync, "--config", config, *command], capture_output=True, text=True)
        print(f"{command[0]}: {done.returncode}: {done.stderr.strip()}", file=sys.stderr)
    return real(*args, **kwargs)

subs.grant = grant
sys.argv = ["iptvsync", "--config", config, "subs", "grant", "--email", "slow@example.com",
            "--product", "145388", "--days", "30", "--key", "slow"]
main()
"""


def test_a_restore_or_rekey_started_during_a_writing_command_is_refused_and_the_write_kept(tmp_path):
    config = bought(tmp_path)
    folder, cfg = config.parent, load_config(config)
    backup = tmp_path / "copy.db"
    assert cli(config, "backup", str(backup)).returncode == 0
    iptvsync = str(Path(sys.executable).parent / "iptvsync")
    done = subprocess.run([sys.executable, "-c", SLOW_GRANT, iptvsync, str(backup), str(config)],
                          capture_output=True, text=True, timeout=120, cwd=folder)
    assert done.returncode == 0, done.stderr
    said = dict(line.split(": ", 1) for line in done.stderr.splitlines() if line.startswith(("restore:", "rekey:")))
    for command in ("restore", "rekey"):
        code, error = said[command].split(": ", 1)
        assert code == "1" and "is in use by a running receiver" in error and "\n" not in error, said
    ledger = Ledger(cfg.ledger_path)
    try:  # the grant is in the ledger everyone reads; nothing was swapped or kept aside
        assert ledger.one("SELECT 1 AS x FROM subscriptions WHERE key = 'manual:slow'") is not None
    finally:
        ledger.close()
    assert not list(folder.glob("*.before-restore-*"))
    assert "IPTVSYNC_NEW_SECRET_KEY" not in (folder / ".env").read_text()


def test_while_a_writer_holds_the_ledger_restore_refuses(tmp_path):
    config = bought(tmp_path)
    backup = tmp_path / "copy.db"
    assert cli(config, "backup", str(backup)).returncode == 0
    before = snapshot(config.parent)
    with held(load_config(config).ledger_path, "LOCK_SH"):
        refused = cli(config, "restore", str(backup), "--yes")
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "is in use" in refused.stderr and snapshot(config.parent) == before


# --- what restore keeps aside ------------------------------------------------------------------------

KILLED_WRITER = """
import os, signal, sys
from iptvsync.ledger.db import Ledger

ledger = Ledger(sys.argv[1])
ledger.audit("test.after-backup", sale_code="only-in-the-wal")
os.kill(os.getpid(), signal.SIGKILL)  # no checkpoint, no close: the row is in the -wal only
"""


def rows(path: Path, sql: str) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_restore_keeps_aside_what_the_wal_holds_and_leaves_no_old_wal_to_the_restored_file(tmp_path):
    config = bought(tmp_path)
    ledger_path = load_config(config).ledger_path
    backup = tmp_path / "copy.db"
    assert cli(config, "backup", str(backup)).returncode == 0
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(ledger_path)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    wal = Path(str(ledger_path) + "-wal")
    assert wal.stat().st_size > 0 and b"only-in-the-wal" not in ledger_path.read_bytes()

    done = cli(config, "restore", str(backup), "--yes")
    assert done.returncode == 0, done.stderr
    aside, = config.parent.glob("iptvsync.db.before-restore-*")
    check = "SELECT COUNT(*) FROM audit WHERE sale_code = 'only-in-the-wal'"
    assert rows(aside, check) == [(1,)]  # kept aside whole, the -wal's row in it
    assert rows(ledger_path, check) == [(0,)]  # the restored file is the copy: no old page replayed into it
    assert rows(ledger_path, "PRAGMA integrity_check") == [("ok",)]


def test_restore_over_a_damaged_ledger_keeps_its_bytes_and_its_wal_aside(tmp_path):
    config = bought(tmp_path)
    ledger_path = load_config(config).ledger_path
    backup = tmp_path / "copy.db"
    assert cli(config, "backup", str(backup)).returncode == 0
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(ledger_path)], timeout=60)
    wal = Path(str(ledger_path) + "-wal")
    damaged = b"garbage!" * 512 + ledger_path.read_bytes()[4096:]  # page 1 overwritten: SQLite opens it no more
    ledger_path.write_bytes(damaged)
    old_wal = wal.read_bytes()

    done = cli(config, "restore", str(backup), "--yes")
    assert done.returncode == 0, done.stderr
    aside, = (p for p in config.parent.glob("iptvsync.db.before-restore-*") if not p.name.endswith("-wal"))
    assert aside.read_bytes() == damaged and Path(str(aside) + "-wal").read_bytes() == old_wal
    assert f"previous ledger kept as {aside} (as found, with its -wal)" in done.stdout
    assert rows(ledger_path, "SELECT COUNT(*) FROM inbox") == rows(backup, "SELECT COUNT(*) FROM inbox")


def test_a_restore_that_cannot_keep_the_ledger_aside_leaves_no_half_copy_and_the_ledger_as_it_was(tmp_path):
    config = bought(tmp_path)
    ledger_path = load_config(config).ledger_path
    backup = tmp_path / "copy.db"
    assert cli(config, "backup", str(backup)).returncode == 0
    garbage = b"not a database at all" * 100
    ledger_path.write_bytes(garbage)
    wal = Path(str(ledger_path) + "-wal")
    wal.unlink(missing_ok=True)
    wal.mkdir()  # a -wal that cannot be copied (a directory): the byte copy fails half-way
    try:
        refused = cli(config, "restore", str(backup), "--yes")
        assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "cannot keep the current ledger aside" in refused.stderr
        assert ledger_path.read_bytes() == garbage and not list(config.parent.glob("*.before-restore-*"))
    finally:
        wal.rmdir()
