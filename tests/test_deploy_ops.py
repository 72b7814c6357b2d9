"""Day-2 operations: rotated backups, restore, upgrades from the first released schema, rekey,
`mail test`, and the bookkeeping tables that must not grow forever."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils
from dotenv import dotenv_values
from freezegun import freeze_time
from support.install import BASE_TOML, FIXTURES, write_install
from support.ops import IPTVSYNC, cli, facts, panel_calls
from support.postbacks import deliver, payload
from support.serve import serving
from support.smtp import _self_signed, smtp_server

from iptvsync.config import load_config
from iptvsync.credentials import decrypt
from iptvsync.engine.runner import run_process
from iptvsync.errors import ConfigError
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.migrations import migrations
from iptvsync.ops import rekey as rekey_mod

FIRST_SCHEMA = FIXTURES / "ledgers" / "v0.1.0"
FIRST_SCHEMA_KEY = "ZmFrZS10ZXN0LWtleS1mb3ItdGhlLXYwLjEuMC1maXg="  # committed with the fixture


def bought(tmp_path: Path, n: int = 3, env: dict | None = None) -> Path:
    config = write_install(tmp_path / "install", env=env)
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    for i in range(n):
        deliver(ledger, payload(2, sale=f"5100000{i}", subscription=f"110437{i}", email=f"b{i}@example.com"))
    ledger.close()
    run_process(cfg)
    return config


# --- backup --keep and restore -------------------------------------------------------------------------

def test_backup_into_a_folder_keeps_the_newest_n_with_dated_names(tmp_path):
    config = bought(tmp_path, 1)
    folder = tmp_path / "backups"
    for _ in range(4):
        result = cli(config, "backup", f"{folder}/", "--keep", "2")
        assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and all(n.startswith("iptvsync-") and n.endswith(".db") for n in names)
    assert "deleted 1 older" in result.stdout
    (folder / "notes.txt").write_text("an operator's file is never rotated away")
    cli(config, "backup", f"{folder}/", "--keep", "1")
    assert (folder / "notes.txt").exists() and len(list(folder.glob("iptvsync-*.db"))) == 1


def test_restore_then_process_converges_with_no_second_line_extension_or_email(tmp_path):
    config = bought(tmp_path)
    folder = config.parent
    before, calls = facts(folder), panel_calls(folder)
    assert calls.count("create") == 3 and len(list((folder / "mail").glob("*.eml"))) == 3
    assert cli(config, "backup", str(tmp_path / "nightly") + "/").returncode == 0
    for name in ("iptvsync.db", "iptvsync.db-wal", "iptvsync.db-shm"):
        (folder / name).unlink(missing_ok=True)  # the machine's disk is gone
    copy = next((tmp_path / "nightly").glob("iptvsync-*.db"))
    restored = cli(config, "restore", str(copy), "--yes")
    assert restored.returncode == 0 and "3 postbacks" in restored.stdout, restored.stderr
    assert cli(config, "process").returncode == 0
    assert facts(folder) == before
    assert panel_calls(folder) == calls  # nothing created or extended again
    assert len(list((folder / "mail").glob("*.eml"))) == 3


def test_restore_keeps_the_current_ledger_aside_and_refuses_a_non_ledger(tmp_path):
    config = bought(tmp_path, 1)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    bad = cli(config, "restore", str(junk), "--yes")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert cli(config, "backup", str(tmp_path / "copy.db")).returncode == 0
    good = cli(config, "restore", str(tmp_path / "copy.db"), "--yes")
    assert good.returncode == 0 and "previous ledger kept as" in good.stdout
    assert len(list(config.parent.glob("iptvsync.db.before-restore-*"))) == 1


# --- upgrades -----------------------------------------------------------------------------------------

def first_schema_install(tmp_path: Path) -> Path:
    config = write_install(tmp_path / "install", env={"IPTVSYNC_SECRET_KEY": FIRST_SCHEMA_KEY})
    for name in ("iptvsync.db", "dry-run-main.json"):
        shutil.copy(FIRST_SCHEMA / name, config.parent / name)
    return config


def test_the_fixture_is_the_first_released_schema():
    conn = sqlite3.connect(FIRST_SCHEMA / "iptvsync.db")
    names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY name")]
    conn.close()
    assert names == ["m001_inbox", "m002_subscriptions", "m003_outbox_audit"]


@pytest.mark.parametrize("command", ["init", "process", "serve"])
def test_an_old_ledger_is_backed_up_then_migrated_by(tmp_path, command):
    config = first_schema_install(tmp_path)
    folder = config.parent
    before = facts(folder)
    if command == "serve":
        with serving(config):
            pass
    else:
        result = cli(config, command)
        assert result.returncode == 0, result.stderr
    backups = list((folder / "backups").glob("iptvsync-*.db"))
    assert len(backups) == 1
    conn = sqlite3.connect(backups[0])
    assert len(conn.execute("SELECT name FROM _sqlite_migrations").fetchall()) == 3  # the copy is pre-upgrade
    conn.close()
    after = facts(folder)
    assert after["migrations"] == sorted(m.name for m in migrations.pending(sqlite_utils.Database(memory=True)))
    assert after["subs"] == before["subs"] and after["sent"] == before["sent"]
    # nothing to do twice: a second open neither backs up nor migrates again
    assert cli(config, "subs", "list").returncode == 0
    assert len(list((folder / "backups").glob("iptvsync-*.db"))) == 1


def test_the_upgraded_ledger_renews_its_old_subscription(tmp_path):
    config = first_schema_install(tmp_path)
    cfg = load_config(config)
    with freeze_time("2026-12-18 12:00:00"):
        ledger = Ledger(cfg.ledger_path)
        old_until = ledger.one("SELECT paid_until FROM subscriptions")["paid_until"]
        deliver(ledger, payload(2, sale="51000099", subscription="1104370", parcela=2, paid="2026-12-18 09:00:00"))
        ledger.close()
        summary = run_process(cfg)
    assert summary["sync"]["synced"] == 1
    ledger = Ledger(cfg.ledger_path)
    sub = ledger.one("SELECT paid_until, sync_status FROM subscriptions")
    kinds = [r["kind"] for r in ledger.query("SELECT kind FROM outbox ORDER BY id")]
    ledger.close()
    assert datetime.fromisoformat(sub["paid_until"]) - datetime.fromisoformat(old_until) == timedelta(days=30)
    assert kinds == ["activation", "renewal"]
    assert panel_calls(config.parent).count("create") == 0  # the old line was kept, not made again


# --- rekey --------------------------------------------------------------------------------------------

class Killed(BaseException):
    """Stands for SIGKILL at a durable step: nothing after it runs."""


@pytest.mark.parametrize("crash_at", [None, "pending key written", "batch up to 2"])
def test_rekey_reencrypts_every_password_and_a_killed_run_converges(tmp_path, crash_at):
    config = bought(tmp_path, 5)
    cfg = load_config(config)
    old_key = cfg.secrets.secret_key
    ledger = Ledger(cfg.ledger_path)
    plain = {r["id"]: decrypt(r["password_enc"], old_key)
             for r in ledger.query("SELECT id, password_enc FROM subscriptions")}
    ledger.close()
    if crash_at:
        def checkpoint(step):
            if step == crash_at:
                raise Killed(step)
        with pytest.raises(Killed):
            rekey_mod.rekey(cfg, environ={}, batch=2, checkpoint=checkpoint)
        assert dotenv_values(config.parent / ".env")["IPTVSYNC_SECRET_KEY"] == old_key  # not switched yet
    result = cli(config, "rekey")
    assert result.returncode == 0, result.stderr
    assert ("resumed" in result.stdout) == bool(crash_at)
    env = dotenv_values(config.parent / ".env")
    new_key = env["IPTVSYNC_SECRET_KEY"]
    assert new_key != old_key and "IPTVSYNC_NEW_SECRET_KEY" not in env and env["MONETIZZE_CHAVE_UNICA"]
    assert (config.parent / ".env").stat().st_mode & 0o777 == 0o600
    ledger = Ledger(cfg.ledger_path)
    rows = ledger.query("SELECT id, password_enc FROM subscriptions")
    ledger.close()
    assert {r["id"]: decrypt(r["password_enc"], new_key) for r in rows} == plain
    assert old_key not in result.stdout + result.stderr and new_key not in result.stdout + result.stderr
    # the install keeps working under the new key: reading lines back decrypts every password
    drift = cli(config, "reconcile", "panel")
    assert drift.returncode == 0, drift.stderr


def test_rekey_refuses_a_key_that_comes_from_the_environment(tmp_path):
    config = bought(tmp_path, 1)
    result = subprocess.run([IPTVSYNC, "--config", str(config), "rekey"], capture_output=True, text=True,
                            env={"IPTVSYNC_SECRET_KEY": dotenv_values(config.parent / ".env")["IPTVSYNC_SECRET_KEY"],
                                 "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 2 and "environment" in result.stderr


# --- mail test ----------------------------------------------------------------------------------------

def smtp_config(tmp_path: Path, port: int, password: str) -> Path:
    toml = BASE_TOML.replace('backend = "maildir"', 'backend = "smtp"') + (
        f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nsmtp_security = "starttls"\n'
        f'smtp_cafile = "{_self_signed()[0]}"\ntimeout_s = 5\n')
    return write_install(tmp_path / "install", toml, env={"SMTP_USERNAME": "loja", "SMTP_PASSWORD": password})


def test_mail_test_shows_each_step_of_the_smtp_conversation(tmp_path):
    with smtp_server(tls="starttls", auth=("loja", "s3nha-smtp")) as server:
        result = cli(smtp_config(tmp_path, server.port, "s3nha-smtp"), "mail", "test", "dono@loja.example")
        assert result.returncode == 0, result.stdout + result.stderr
        steps = {line.split()[0]: line for line in result.stdout.splitlines()}
        assert "TLSv1.3" in steps["starttls"] and "ok" in steps["auth"] and "as loja" in steps["auth"]
        assert "250" in steps["rcpt"] and "accepted: 250 2.0.0 Ok: queued as 4F2XQK" in steps["data"]
        assert [r.rcpt_tos for r in server.received] == [["dono@loja.example"]]
        assert server.received[0].message()["Subject"] == "iptvsync: email de teste"


def test_mail_test_names_the_failed_step_and_never_the_password(tmp_path):
    with smtp_server(tls="starttls", auth=("loja", "s3nha-smtp")) as server:
        result = cli(smtp_config(tmp_path, server.port, "wr0ng-pa55"), "mail", "test", "dono@loja.example")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].split()[:2] == ["auth", "FAILED"] and "535" in result.stdout
    assert "wr0ng-pa55" not in result.stdout + result.stderr and server.received == []


def test_mail_test_with_the_maildir_backend_says_nothing_was_sent(tmp_path):
    result = cli(write_install(tmp_path / "install"), "mail", "test", "dono@loja.example")
    assert result.returncode == 0 and "nothing is sent" in result.stdout


# --- nothing grows without bound ------------------------------------------------------------------------

def test_process_prunes_old_run_summaries_and_rejection_counters(tmp_path):
    config = write_install(tmp_path / "install")
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    t = datetime(2026, 12, 1, 12, tzinfo=UTC)
    with ledger.tx() as conn:
        for days in (200, 100, 40, 1):
            at = t - timedelta(days=days)
            conn.execute("INSERT INTO runs (started_at, finished_at, summary) VALUES (?, ?, '{}')",
                         (at.strftime("%Y-%m-%dT%H:%M:%SZ"), at.strftime("%Y-%m-%dT%H:%M:%SZ")))
            conn.execute("INSERT INTO rejections (day, status, reason, count, last_at) VALUES (?, 403, 'x', 5, ?)",
                         (at.strftime("%Y-%m-%d"), at.isoformat()))
    ledger.close()
    with freeze_time(t):
        run_process(cfg)
    ledger = Ledger(cfg.ledger_path)
    runs = [r["started_at"][:10] for r in ledger.query("SELECT started_at FROM runs ORDER BY id")]
    days = [r["day"] for r in ledger.query("SELECT day FROM rejections ORDER BY day")]
    ledger.close()
    assert runs == ["2026-11-30", "2026-12-01"]  # 30 days of run summaries (and this run)
    assert days == ["2026-10-22", "2026-11-30"]  # 90 days of rejection counters


def test_mail_alert_tells_the_operator_which_unit_failed_and_what_status_says(tmp_path):
    config = write_install(tmp_path / "install")
    result = cli(config, "mail", "alert", "dono@loja.example", "--unit", "iptvsync-process.service")
    assert result.returncode == 0, result.stderr
    [eml] = (config.parent / "mail").glob("*.eml")
    text = eml.read_text()
    assert "iptvsync-process.service falhou" in text and "journalctl -u iptvsync-process.service" in text


def test_rekey_killed_with_sigkill_mid_run_converges_on_the_next_run(tmp_path):
    """A real kill, wherever it lands once the pending key is on disk: the next run finishes."""
    import os
    import signal
    import time

    from iptvsync.credentials import encrypt

    config = write_install(tmp_path / "install")
    cfg = load_config(config)
    old_key = cfg.secrets.secret_key
    ledger = Ledger(cfg.ledger_path)
    with ledger.tx() as conn:
        conn.executemany("INSERT INTO subscriptions (key, product_code, panel, username, password_enc, created_at,"
                         " updated_at) VALUES (?, '145388', 'main', ?, ?, '2026-12-01T00:00:00Z',"
                         " '2026-12-01T00:00:00Z')",
                         [(f"sub:{i}", f"tv{i:010d}", encrypt(f"Pw{i}x", old_key)) for i in range(5000)])
    ledger.close()
    env_file = config.parent / ".env"
    proc = subprocess.Popen([IPTVSYNC, "--config", str(config), "rekey"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    def first_batch_committed() -> bool:
        conn = sqlite3.connect(cfg.ledger_path)
        try:
            token = conn.execute("SELECT password_enc FROM subscriptions WHERE key = 'sub:0'").fetchone()[0]
        finally:
            conn.close()
        try:
            decrypt(token, old_key)
            return False
        except ConfigError:
            return True

    deadline = time.monotonic() + 60
    while proc.poll() is None and not first_batch_committed():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert proc.poll() is None, "rekey finished before it could be killed mid-run"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    again = cli(config, "rekey")
    assert again.returncode == 0, again.stderr
    new_key = dotenv_values(env_file)["IPTVSYNC_SECRET_KEY"]
    ledger = Ledger(cfg.ledger_path)
    rows = ledger.query("SELECT key, password_enc FROM subscriptions ORDER BY id")
    ledger.close()
    assert [decrypt(r["password_enc"], new_key) for r in rows] == [f"Pw{i}x" for i in range(5000)]
