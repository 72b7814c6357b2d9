"""What an operator's hands can do to a running install (issue 17 items 7-10, issue 18 items 4
and 6): replace the ledger under a running receiver, rekey while something writes, lose
``.env``, mistype ``[ledger] path``; and every failed ``process`` run says so in its exit code
and in ``status``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.fernet import Fernet
from dotenv import dotenv_values
from support.install import BASE_TOML, wait_for, write_install
from support.ops import cli
from support.postbacks import deliver, payload
from support.receiver import PATH, sale_body

from iptvsync.config import load_config
from iptvsync.credentials import decrypt
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.queue import MailStatus


def bought(tmp_path: Path, n: int = 3, toml: str = BASE_TOML) -> Path:
    """An install whose ``n`` buyers have their line and their activation email."""
    config = write_install(tmp_path / "install", toml)
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    for i in range(n):
        deliver(ledger, payload(2, sale=f"5100000{i}", subscription=f"110437{i}", email=f"b{i}@example.com"))
    ledger.close()
    run_process(cfg)
    return config


def renew(config: Path, i: int, sale: str) -> None:
    """The second charge of buyer ``i``: a renewal to extend the line and to email."""
    ledger = Ledger(load_config(config).ledger_path)
    deliver(ledger, payload(2, sale=sale, subscription=f"110437{i}", parcela=2, paid="2026-12-05 10:00:00",
                            email=f"b{i}@example.com"))
    ledger.close()


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def status_json(config: Path) -> tuple[int, dict]:
    result = cli(config, "status", "--json")
    return result.returncode, json.loads(result.stdout)


# --- 17.7: restore under a running receiver -----------------------------------------------------------

class Load:
    """Threads posting distinct sales to a receiver without pause; ``paused()`` waits until no
    request is in flight and holds them back, so the test can act between two requests."""

    def __init__(self, url: str, threads: int = 4):
        import requests

        self.url, self.requests = url, requests
        self.results: list[tuple[float, str, int]] = []  # (monotonic start, sale, status)
        self.stop, self.go = threading.Event(), threading.Event()
        self.go.set()
        self.gates = [threading.Lock() for _ in range(threads)]
        self.threads = [threading.Thread(target=self._post, args=(gate, n), daemon=True)
                        for n, gate in enumerate(self.gates)]
        for thread in self.threads:
            thread.start()

    def _post(self, gate: threading.Lock, n: int) -> None:
        session, i = self.requests.Session(), 0
        while not self.stop.is_set():
            self.go.wait()  # a pause: no new request (Lock is not fair: the gate alone could starve it)
            with gate:
                sale, i = f"9{n}{i:07d}", i + 1
                started = time.monotonic()
                try:
                    status = session.post(self.url + PATH, data=sale_body(sale), timeout=60,
                                          headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code
                except self.requests.RequestException:
                    status = 0
                self.results.append((started, sale, status))

    def paused(self):
        class _Paused:
            def __enter__(_):
                self.go.clear()
                for gate in self.gates:  # each request in flight finishes first
                    gate.acquire()

            def __exit__(_, *exc):
                for gate in self.gates:
                    gate.release()
                self.go.set()
        return _Paused()

    def count(self) -> int:
        return len(self.results)

    def finish(self) -> list[tuple[float, str, int]]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)
        return self.results


def sales_in(ledger_path: Path) -> set[str]:
    conn = sqlite3.connect(ledger_path)
    try:
        return {r[0] for r in conn.execute("SELECT sale_code FROM inbox")}
    finally:
        conn.close()


def test_restore_is_refused_under_load_and_a_ledger_replaced_behind_the_receiver_gets_no_200(tmp_path, start):
    config = write_install(tmp_path / "install")
    receiver = start(config)
    ledger_path = receiver.ledger
    backup = tmp_path / "backup.db"
    assert cli(config, "backup", str(backup)).returncode == 0
    load = Load(receiver.url)
    wait_for(lambda: load.count() >= 50, "the first postbacks under load")

    refused = cli(config, "restore", str(backup), "--yes")
    error = one_line_error(refused, 1)
    assert "in use by a running receiver" in error and "systemctl stop 'iptvsync-*'" in error
    assert not list(ledger_path.parent.glob("*.before-restore-*"))  # nothing was touched

    # an operator who copies a file over the ledger by hand, behind the receiver's back
    with load.paused():
        copy = tmp_path / "copy.db"
        src, dst = sqlite3.connect(ledger_path), sqlite3.connect(copy)
        src.backup(dst)
        dst.close()
        src.close()
        os.replace(copy, ledger_path)
        replaced_at = time.monotonic()
    wait_for(lambda: sum(1 for t, _, _ in load.results if t > replaced_at) >= 40, "postbacks after the replace")
    wait_for(lambda: receiver.get("/healthz").status_code == 503, "/healthz to say the ledger is gone")
    results = load.finish()

    after = [(sale, status) for started, sale, status in results if started > replaced_at]
    assert after and all(status == 503 for _, status in after), sorted({s for _, s in after})
    acknowledged = {sale for _, sale, status in results if status == 200}
    assert len(acknowledged) >= 50
    assert acknowledged <= sales_in(ledger_path)  # every 200 is in the ledger at the path
    assert "was replaced while the receiver ran" in receiver.log()
    assert receiver.log().count("was replaced while the receiver ran") <= 2  # said once, not per postback


# --- 18.6: only init creates a ledger -------------------------------------------------------------------

def test_a_mistyped_ledger_path_is_refused_by_every_command_and_no_ledger_is_created(tmp_path, receiver_up):
    config = write_install(tmp_path / "install", BASE_TOML.replace('path = "iptvsync.db"', 'path = "iptvsync.dbb"'),
                           ledger=False)
    typo = config.parent / "iptvsync.dbb"
    for command in (["status"], ["subs", "list"], ["process"], ["inbox", "list"], ["logs"], ["serve", "--port", "0"],
                    ["backup", str(tmp_path / "b.db")], ["rekey"]):
        error = one_line_error(cli(config, *command, timeout=60), 2)
        assert str(typo) in error and "[ledger] path" in error and "iptvsync init" in error, (command, error)
    assert not typo.exists() and not list(config.parent.glob("iptvsync.dbb*"))
    done = cli(config, "init")
    assert done.returncode == 0 and typo.exists()  # init is the one that creates it
    assert cli(config, "status").returncode == 0


# --- 17.9: a lost .env, a ledger from another install ----------------------------------------------------

def test_init_refuses_to_invent_a_key_for_a_ledger_with_encrypted_passwords(tmp_path):
    config = bought(tmp_path, 2)
    env = config.parent / ".env"
    env.unlink()
    error = one_line_error(cli(config, "init"), 2)
    assert ".env is missing" in error and "IPTVSYNC_SECRET_KEY" in error and "2 panel password(s)" in error
    assert not env.exists()


def test_status_and_doctor_catch_a_ledger_restored_from_another_install(tmp_path, receiver_up):
    config = bought(tmp_path / "a", 2)
    other = write_install(tmp_path / "b" / "install", env={"IPTVSYNC_SECRET_KEY": Fernet.generate_key().decode()})
    assert cli(other, "status").returncode == 0
    assert cli(other, "restore", str(load_config(config).ledger_path), "--yes").returncode == 0
    code, report = status_json(other)
    assert code == 1 and any("opens with no key of this install" in p for p in report["problems"]), report
    doctor = cli(other, "doctor", "--json")
    rows = {row["check"]: row for row in json.loads(doctor.stdout)}
    assert doctor.returncode == 1 and rows["stored passwords"]["status"] == "fail"


# --- 17.8: rekey -----------------------------------------------------------------------------------------

def test_rekey_is_refused_while_serve_processes(tmp_path, start):
    config = bought(tmp_path, 1)
    env_before = (config.parent / ".env").read_bytes()
    start(config, "--process-every", "1")
    error = one_line_error(cli(config, "rekey"), 1)
    assert "in use by a running receiver" in error and "systemctl stop 'iptvsync-*'" in error
    assert (config.parent / ".env").read_bytes() == env_before  # no pending key left behind


def test_rekey_started_during_a_process_run_says_so_in_one_line(tmp_path):
    config = bought(tmp_path, 1)
    renew(config, 0, "51000090")
    seen = []

    class RekeyingBackend:  # the mail stage runs inside the run's lock: try a rekey from there
        def send(self, msg):
            seen.append(cli(config, "rekey"))

    summary = run_process(load_config(config), mail_backend=RekeyingBackend())
    assert seen and summary["mail"][MailStatus.SENT] == 1
    error = one_line_error(seen[0], 1)
    assert "in use by a running receiver, `process`" in error


REKEY_STOPPED_MID_RUN = """
import os, signal, sys
from iptvsync.config import load_config
from iptvsync.ops.rekey import rekey

def checkpoint(step):
    if step == "batch up to 2":  # two passwords re-encrypted and committed: stop here to be killed
        os.kill(os.getpid(), signal.SIGSTOP)

rekey(load_config(sys.argv[1]), environ={}, batch=2, checkpoint=checkpoint)
"""


def test_rekey_killed_mid_run_leaves_every_password_readable_and_resumes(tmp_path, receiver_up):
    config = bought(tmp_path, 4)
    cfg = load_config(config)
    old_key = cfg.secrets.secret_key
    before = tmp_path / "before-rekey.db"
    assert cli(config, "backup", str(before)).returncode == 0
    ledger = Ledger(cfg.ledger_path)
    plain = {r["id"]: decrypt(r["password_enc"], old_key) for r in ledger.query("SELECT * FROM subscriptions")}
    ledger.close()

    proc = subprocess.Popen([sys.executable, "-c", REKEY_STOPPED_MID_RUN, str(config)])
    _, state = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(state)
    try:  # a rekey in progress holds the ledger: process waits its turn, a second rekey is refused
        skipped = cli(config, "process")
        assert skipped.returncode == 0 and "a restore or rekey is running on this ledger" in skipped.stderr
        one_line_error(cli(config, "rekey"), 1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert dotenv_values(config.parent / ".env").get("IPTVSYNC_NEW_SECRET_KEY")

    # process after the kill: passwords of both keys open; renewals are applied and emailed
    renew(config, 0, "51000090")  # re-encrypted under the pending key
    renew(config, 3, "51000093")  # still under the old key
    ran = cli(config, "process")
    assert ran.returncode == 0, ran.stderr
    ledger = Ledger(cfg.ledger_path)
    emails = ledger.query("SELECT subscription_id, kind, status FROM outbox ORDER BY id")
    ledger.close()
    assert [e["status"] for e in emails] == [MailStatus.SENT] * 6, emails
    code, report = status_json(config)
    assert code == 1 and any("rekey was interrupted" in p for p in report["problems"])

    resumed = cli(config, "rekey")
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    env = dotenv_values(config.parent / ".env")
    new_key = env["IPTVSYNC_SECRET_KEY"]
    assert new_key != old_key and "IPTVSYNC_NEW_SECRET_KEY" not in env
    assert env["IPTVSYNC_RETIRED_KEYS"] == old_key  # kept for the backups made before
    ledger = Ledger(cfg.ledger_path)
    assert {r["id"]: decrypt(r["password_enc"], new_key) for r in ledger.query("SELECT * FROM subscriptions")} == plain
    ledger.close()
    assert cli(config, "status").returncode == 0

    # an older backup, restored: its passwords open with the retired key, and a renewal works
    assert cli(config, "restore", str(before), "--yes").returncode == 0
    assert cli(config, "status").returncode == 0
    renew(config, 1, "51000091")
    ran = cli(config, "process")
    assert ran.returncode == 0, ran.stderr
    again = cli(config, "rekey")  # and the next rekey moves them to the current key
    assert again.returncode == 0, again.stderr
    env = dotenv_values(config.parent / ".env")
    assert env["IPTVSYNC_RETIRED_KEYS"].split(",") == [new_key, old_key]


def test_a_second_rekey_writes_nothing_when_a_password_opens_with_no_key(tmp_path):
    config = bought(tmp_path, 2)
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    with ledger.tx() as conn:  # encrypted under a key this install never had
        conn.execute("UPDATE subscriptions SET password_enc = ? WHERE id = 2",
                     (Fernet(Fernet.generate_key()).encrypt(b"Pw2").decode(),))
    ledger.close()
    env_before = (config.parent / ".env").read_bytes()
    error = one_line_error(cli(config, "rekey"), 1)
    assert "subscription 2" in error and "nothing changed" in error
    assert (config.parent / ".env").read_bytes() == env_before


# --- 17.10 and 18.4: a failed run fails `process` and `status` --------------------------------------------

def test_a_password_no_key_opens_fails_the_run_status_and_marks_the_subscription(tmp_path):
    config = bought(tmp_path, 1)
    env = config.parent / ".env"
    env.write_text(env.read_text().replace(load_config(config).secrets.secret_key, Fernet.generate_key().decode()))
    renew(config, 0, "51000090")
    ran = cli(config, "process")
    error = ran.stderr.strip().splitlines()[-1]
    assert ran.returncode == 1 and "this run failed" in error and "does not decrypt" in error, ran.stderr
    sub = json.loads(cli(config, "subs", "show", "1", "--json").stdout)
    assert "does not decrypt" in sub["last_error"]
    code, report = status_json(config)
    assert code == 1 and any("last `process` run" in p and "does not decrypt" in p for p in report["problems"])


def test_a_broken_template_fails_the_run_and_status_until_a_run_succeeds(tmp_path):
    toml = BASE_TOML.replace('backend = "maildir"', 'backend = "maildir"\ntemplates_dir = "templates"')
    config = write_install(tmp_path / "install", toml)
    (config.parent / "templates").mkdir()
    (config.parent / "templates" / "activation.txt").write_text("Olá {{ buyer_name.nope() }}\n")
    ledger = Ledger(load_config(config).ledger_path)
    deliver(ledger, payload(2))
    ledger.close()
    ran = cli(config, "process")
    assert ran.returncode == 1 and "this run failed" in ran.stderr, ran.stderr
    sub = json.loads(cli(config, "subs", "show", "1", "--json").stdout)
    assert sub["emails"][0]["last_error"] and "Undefined" in sub["emails"][0]["last_error"]
    code, report = status_json(config)
    assert code == 1 and any("last `process` run" in p for p in report["problems"])
    assert report["facts"]["last_run_error"]
    (config.parent / "templates" / "activation.txt").unlink()
    assert cli(config, "subs", "retry", "1").returncode == 0
    assert cli(config, "process").returncode == 0
    assert status_json(config)[1]["facts"]["last_run_error"] is None


def test_status_fails_while_the_last_process_run_failed_on_its_config(tmp_path):
    config = write_install(tmp_path / "install", BASE_TOML.replace('backend = "maildir"', 'backend = "smtp"'))
    ledger = Ledger(load_config(config).ledger_path)
    deliver(ledger, payload(2))
    ledger.close()
    ran = cli(config, "process")
    assert ran.returncode == 2 and "smtp_host" in ran.stderr
    code, report = status_json(config)
    assert code == 1, report
    assert any("last `process` run" in p and "smtp_host" in p for p in report["problems"]), report["problems"]


def test_the_receiver_refuses_to_start_without_its_ledger(tmp_path):
    config = write_install(tmp_path / "install", ledger=False)
    error = one_line_error(cli(config, "serve", "--port", "0", timeout=60), 2)
    assert "no ledger there" in error and not (config.parent / "iptvsync.db").exists()


def test_an_unexpected_panel_reply_fails_the_run_and_marks_the_subscription(tmp_path):
    from iptvsync.engine.runner import build_panels

    config = write_install(tmp_path / "install")
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    deliver(ledger, payload(2))
    ledger.close()
    panels = build_panels(cfg)

    def garbled(username, password, line_id=None):  # an adapter tripping over a reply it never saw
        return {"user_info": []}["user_info"][0]

    panels["main"].get = garbled
    summary = run_process(cfg, panels=panels)
    assert summary["errors"] and "IndexError" in summary["errors"][0]
    sub = json.loads(cli(config, "subs", "show", "1", "--json").stdout)
    assert sub["last_error"].startswith("IndexError")
    code, report = status_json(config)
    assert code == 1 and any("last `process` run" in p and "IndexError" in p for p in report["problems"])


def test_a_postback_that_breaks_apply_fails_the_run(tmp_path, monkeypatch):
    import iptvsync.engine.apply as apply

    config = write_install(tmp_path / "install")
    ledger = Ledger(load_config(config).ledger_path)
    deliver(ledger, payload(2))
    ledger.close()

    def broken(*args, **kwargs):
        raise ValueError("a field no rule expected")

    monkeypatch.setattr(apply, "apply_postback", broken)
    summary = run_process(load_config(config))
    assert summary["errors"] and "ValueError" in summary["errors"][0]
    code, report = status_json(config)
    assert code == 1 and any("a field no rule expected" in p for p in report["problems"])
