"""Continuous replication with Litestream (pip install 'iptvsync[replica]'): the rendered config
replicates a live ledger to a file replica; after the disk is lost, the restored ledger lets
`process` converge with no second line, extension or email."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from support.binaries import need
from support.install import wait_for, write_install
from support.ops import cli, facts, panel_calls
from support.serve import post, postback_body, serving

PATH = "/monetizze/postback/s3cr3tpath"


def restore_copy(litestream: str, yml: Path, ledger: Path, out: Path) -> subprocess.CompletedProcess:
    out.unlink(missing_ok=True)
    return subprocess.run([litestream, "restore", "-config", str(yml), "-o", str(out), str(ledger)],
                          capture_output=True, text=True, timeout=60)


def sent_in(copy: Path) -> int:
    import sqlite3

    if not copy.exists():
        return -1
    conn = sqlite3.connect(copy)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
    finally:
        conn.close()


def test_replicated_ledger_restores_and_process_converges(tmp_path):
    litestream = need("litestream")
    config = write_install(tmp_path / "install")
    folder = config.parent
    assert cli(config, "init").returncode == 0
    units = tmp_path / "units"
    rendered = cli(config, "deploy", "litestream", "--replica", str(tmp_path / "replica"), "--output", str(units))
    assert rendered.returncode == 0, rendered.stderr
    yml = folder / "litestream.yml"
    assert f"path: {folder / 'iptvsync.db'}" in yml.read_text()
    verify = subprocess.run([need("systemd-analyze"), "verify", str(units / "iptvsync-litestream.service")],
                            capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stderr) == (0, "")

    replicator = subprocess.Popen([litestream, "replicate", "-config", str(yml)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
    try:
        with serving(config) as (url, _):
            port = int(url.rsplit(":", 1)[1])
            for i in range(3):
                status, body = post("127.0.0.1", port, PATH, postback_body(f"b{i}@example.com"))
                assert status == 200, body
        assert cli(config, "process").returncode == 0
        before, calls = facts(folder), panel_calls(folder)
        assert calls.count("create") == 3 and [s for *_, s in before["sent"]] == ["sent"] * 3
        # the replica catches up within its sync-interval: poll it by restoring a copy
        probe = tmp_path / "probe.db"
        wait_for(lambda: restore_copy(litestream, yml, folder / "iptvsync.db", probe).returncode == 0
                 and sent_in(probe) == 3, "the replica to hold the three sent emails", timeout=60)
    finally:
        replicator.send_signal(signal.SIGTERM)
        replicator.wait(timeout=30)
        replicator.stderr.close()

    for name in ("iptvsync.db", "iptvsync.db-wal", "iptvsync.db-shm"):
        (folder / name).unlink(missing_ok=True)  # the disk is lost; the replica is elsewhere
    out = tmp_path / "restored.db"
    old_umask = os.umask(0o077)
    try:
        assert restore_copy(litestream, yml, folder / "iptvsync.db", out).returncode == 0
    finally:
        os.umask(old_umask)
    restored = cli(config, "restore", str(out), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert cli(config, "process").returncode == 0
    assert facts(folder) == before
    assert panel_calls(folder) == calls
    assert len(list((folder / "mail").glob("*.eml"))) == 3
    assert cli(config, "audit", "verify").returncode == 0
