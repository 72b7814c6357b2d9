"""The ledger: migrations (blank and upgrade), pragmas, transactions, the audit chain, backups."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading

import pytest
import sqlite_utils

from iptvsync.errors import LedgerError
from iptvsync.ledger.db import GENESIS, os_user
from iptvsync.ledger.db import Ledger as OpenLedger
from iptvsync.ledger.migrations import migrations


def Ledger(path, **kwargs):  # noqa: N802 - these tests make their ledgers as `init` does
    return OpenLedger(path, create=True, **kwargs)

TABLES = {"inbox", "rejections", "subscriptions", "charges", "grants", "outbox", "audit", "runs"}


def all_migration_names() -> list[str]:
    return [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def add_row(conn, received_at="2026-11-20T17:37:57Z", key="k1") -> None:
    conn.execute("INSERT INTO inbox (received_at, body, dedupe_key, kind, last_seen_at)"
                 " VALUES (:at, :body, :key, 'purchase', :at)", {"at": received_at, "body": b"x", "key": key})


def count(ledger: Ledger, table: str = "inbox") -> int:
    return ledger.one(f"SELECT count(*) AS n FROM {table}")["n"]


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.db")
    yield led
    led.close()


# --- opening: blank and upgrade ----------------------------------------------------------------------

def test_blank_database_gets_every_migration_and_table(ledger):
    names = all_migration_names()
    assert len(names) >= 3 and names[0] == "m001_inbox"
    assert ledger.pending_migrations() == []
    assert [m.name for m in migrations.applied(ledger.db)] == names
    assert TABLES <= set(ledger.db.table_names())


def test_blank_database_pragmas(tmp_path):
    led = Ledger(tmp_path / "ledger.db", timeout_s=3)
    conn = led.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 3000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    led.close()
    # WAL is a property of the file: a plain connection sees it too
    raw = sqlite3.connect(tmp_path / "ledger.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_ledger_file_and_its_wal_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        led = Ledger(tmp_path / "sub" / "ledger.db")
        with led.tx() as conn:
            add_row(conn)
        assert mode(tmp_path / "sub" / "ledger.db") == 0o600
        wal = tmp_path / "sub" / "ledger.db-wal"
        assert wal.exists() and mode(wal) == 0o600
        led.close()
    finally:
        os.umask(old)


def test_opening_an_existing_ledger_keeps_its_mode_and_data(tmp_path):
    with Ledger(tmp_path / "ledger.db").tx() as conn:
        add_row(conn)
    again = Ledger(tmp_path / "ledger.db")
    assert count(again) == 1
    assert mode(tmp_path / "ledger.db") == 0o600


def test_upgrade_from_the_first_migration_keeps_rows(tmp_path):
    path = tmp_path / "old.db"
    names = all_migration_names()
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before=names[1])
    assert "inbox" in old.table_names() and "subscriptions" not in old.table_names()
    add_row(old.conn)
    old.conn.commit()
    old.close()

    led = Ledger(path, migrate=False)
    assert led.pending_migrations() == names[1:]
    assert led.migrate() == names[1:]
    assert led.pending_migrations() == [] and led.migrate() == []
    assert TABLES <= set(led.db.table_names())
    assert led.one("SELECT dedupe_key, kind FROM inbox") == {"dedupe_key": "k1", "kind": "purchase"}
    led.close()

    # and simply opening it (the default) upgrades too
    path2 = tmp_path / "old2.db"
    old = sqlite_utils.Database(path2)
    migrations.apply(old, stop_before=names[1])
    add_row(old.conn)
    old.conn.commit()
    old.close()
    led = Ledger(path2)
    assert led.pending_migrations() == [] and TABLES <= set(led.db.table_names())
    assert count(led) == 1


def test_two_processes_migrating_at_once_do_not_collide(tmp_path):
    """Upgrade day: `serve` and cron's `process` both open the old ledger. The second to come must
    wait for the first and then find nothing to do, not crash on "table already exists"."""
    path = tmp_path / "ledger.db"
    first = Ledger(path, migrate=False)
    second = Ledger(path, migrate=False)
    about_to_write = threading.Event()

    def trace(sql: str) -> None:
        if sql.lstrip().upper().startswith(("BEGIN IMMEDIATE", "CREATE")):
            about_to_write.set()

    second.conn.set_trace_callback(trace)
    outcome: dict = {}

    def run_second():
        try:
            outcome["applied"] = second.migrate()
        except Exception as exc:  # pragma: no cover - the failure this test guards against
            outcome["error"] = exc

    first.conn.execute("BEGIN IMMEDIATE")  # the first process is mid-migration
    thread = threading.Thread(target=run_second)
    thread.start()
    assert about_to_write.wait(10)
    migrations.apply(first.db)  # runs inside first's transaction (savepoints)
    first.conn.execute("COMMIT")
    thread.join(20)
    assert "error" not in outcome, outcome.get("error")
    assert second.pending_migrations() == []
    assert [m.name for m in migrations.applied(second.db)] == all_migration_names()


def test_unopenable_ledger_is_a_ledger_error(tmp_path):
    (tmp_path / "not-a-db").write_bytes(b"this is not an SQLite file, just text" * 100)
    with pytest.raises(LedgerError) as info:
        Ledger(tmp_path / "not-a-db")
    assert str(tmp_path / "not-a-db") in str(info.value)
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(LedgerError):
        Ledger(tmp_path / "dir.db")


# --- transactions -------------------------------------------------------------------------------------

def test_tx_commits(ledger, tmp_path):
    with ledger.tx() as conn:
        add_row(conn)
    assert count(Ledger(tmp_path / "ledger.db")) == 1


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_tx_rolls_back_on_exception(ledger, exc):
    with pytest.raises(type(exc)):
        with ledger.tx() as conn:
            add_row(conn)
            raise exc
    assert count(ledger) == 0
    assert not ledger.conn.in_transaction
    with ledger.tx() as conn:  # usable again
        add_row(conn)
    assert count(ledger) == 1


def test_nested_tx_joins_the_outer_one(ledger, tmp_path):
    other = Ledger(tmp_path / "ledger.db")
    with ledger.tx() as outer:
        add_row(outer, key="a")
        with ledger.tx() as inner:
            assert inner is outer
            add_row(inner, key="b")
        assert ledger.conn.in_transaction  # the inner block did not commit
        assert count(other) == 0  # nothing visible outside yet
    assert count(other) == 2


def test_error_in_nested_tx_rolls_back_the_whole_transaction(ledger):
    with pytest.raises(RuntimeError):
        with ledger.tx() as outer:
            add_row(outer, key="a")
            with ledger.tx() as inner:
                add_row(inner, key="b")
                raise RuntimeError("inner failed")
    assert count(ledger) == 0
    with ledger.tx() as conn:
        add_row(conn, key="c")
    assert count(ledger) == 1


def test_begin_immediate_serialises_two_ledgers_on_one_file(tmp_path):
    path = tmp_path / "ledger.db"
    a = Ledger(path)
    b = Ledger(path, timeout_s=0.2)
    with a.tx() as conn:
        add_row(conn, key="a")
        # the write lock is taken at BEGIN: b cannot even start a transaction, let alone write
        with pytest.raises(LedgerError, match="locked"):
            with b.tx():
                pass  # pragma: no cover
        assert not b.conn.in_transaction
        # but b can still read the last committed state (WAL)
        assert count(b) == 0
    with b.tx() as conn:
        add_row(conn, key="b")
    assert count(a) == 2


def test_concurrent_read_modify_write_loses_no_update(tmp_path):
    path = tmp_path / "ledger.db"
    Ledger(path).conn.execute("INSERT INTO runs (started_at, summary) VALUES ('t', '0')")
    errors: list[BaseException] = []

    def bump(n: int) -> None:
        led = Ledger(path)
        try:
            for _ in range(n):
                with led.tx() as conn:
                    value = int(conn.execute("SELECT summary FROM runs WHERE id = 1").fetchone()[0])
                    conn.execute("UPDATE runs SET summary = :v WHERE id = 1", {"v": str(value + 1)})
        except BaseException as exc:  # pragma: no cover - what BEGIN IMMEDIATE prevents
            errors.append(exc)
        finally:
            led.close()

    threads = [threading.Thread(target=bump, args=(40,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert Ledger(path).one("SELECT summary FROM runs WHERE id = 1")["summary"] == "120"


# --- audit chain ----------------------------------------------------------------------------------------

def audit_rows(ledger):
    return ledger.query("SELECT * FROM audit ORDER BY id")


def test_audit_rows_chain_and_verify(ledger):
    with ledger.tx():
        ledger.audit("charge.paid", actor="process", subscription_id=1, sale_code="S1", buyer_email="a@x", days=30)
        ledger.audit("panel.created", actor="process", subscription_id=1, panel="main")
    with ledger.tx():
        ledger.audit("subs.extend", days=7)
    rows = audit_rows(ledger)
    assert [r["action"] for r in rows] == ["charge.paid", "panel.created", "subs.extend"]
    assert rows[0]["prev_hash"] == GENESIS
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    assert len({r["hash"] for r in rows}) == 3
    assert json.loads(rows[0]["detail"]) == {"days": 30}
    assert rows[2]["actor"] == f"cli:{os_user()}"  # CLI actions are the OS user's
    assert ledger.verify_audit() == (3, None)


def test_empty_audit_verifies(ledger):
    assert ledger.verify_audit() == (0, None)


@pytest.mark.parametrize(("column", "value"), [
    ("detail", '{"days": 3650}'), ("action", "charge.refunded"), ("buyer_email", "other@x"),
    ("actor", "mallory"), ("at", "2020-01-01T00:00:00Z"), ("subscription_id", 99),
])
def test_tampering_with_a_row_is_detected_at_that_row(ledger, column, value):
    with ledger.tx():
        for days in (1, 2, 3, 4):
            ledger.audit("subs.extend", subscription_id=1, buyer_email="a@x", days=days)
    target = audit_rows(ledger)[2]["id"]
    ledger.conn.execute(f"UPDATE audit SET {column} = :v WHERE id = :id", {"v": value, "id": target})
    assert ledger.verify_audit() == (2, target)


def test_deleting_a_row_is_detected_at_the_next_one(ledger):
    with ledger.tx():
        for days in (1, 2, 3):
            ledger.audit("subs.extend", days=days)
    ids = [r["id"] for r in audit_rows(ledger)]
    ledger.conn.execute("DELETE FROM audit WHERE id = :id", {"id": ids[1]})
    assert ledger.verify_audit() == (1, ids[2])


def test_rehashing_a_tampered_row_breaks_the_next_link(ledger):
    from iptvsync.ledger.db import audit_hash

    with ledger.tx():
        for days in (1, 2, 3):
            ledger.audit("subs.extend", days=days)
    rows = audit_rows(ledger)
    forged = {k: rows[1][k] for k in ("at", "actor", "action", "subscription_id", "sale_code", "buyer_email")}
    forged["detail"] = '{"days": 999}'
    ledger.conn.execute("UPDATE audit SET detail = :d, hash = :h WHERE id = :id",
                        {"d": forged["detail"], "h": audit_hash(rows[1]["prev_hash"], forged), "id": rows[1]["id"]})
    assert ledger.verify_audit() == (2, rows[2]["id"])


def test_audit_drops_secret_looking_keys(ledger):
    with ledger.tx():
        ledger.audit("panel.created", password="hunter2-pass", api_key="key-123456", panel_api_key="pk-999999",
                     chave_unica="chave-abcdef", smtp_password="smtp-pw-000", days=30, panel="main", note=None)
    row = audit_rows(ledger)[0]
    assert json.loads(row["detail"]) == {"days": 30, "panel": "main"}
    flat = json.dumps(row)
    for secret in ("hunter2-pass", "key-123456", "pk-999999", "chave-abcdef", "smtp-pw-000"):
        assert secret not in flat
    assert ledger.verify_audit() == (1, None)


# --- backup ---------------------------------------------------------------------------------------------

def test_backup_is_a_consistent_private_copy_during_open_transactions(ledger, tmp_path):
    with ledger.tx() as conn:
        for i in range(50):
            add_row(conn, key=f"k{i}")
        ledger.audit("seed", rows=50)
    reader = sqlite3.connect(tmp_path / "ledger.db")
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM inbox").fetchone()[0] == 50  # read transaction open
    writer = Ledger(tmp_path / "ledger.db")
    writer.conn.execute("BEGIN IMMEDIATE")
    add_row(writer.conn, key="uncommitted")  # a writer mid-transaction, too

    target = ledger.backup(tmp_path / "backups" / "copy.db")
    writer.conn.execute("ROLLBACK")
    reader.execute("COMMIT")

    assert target == tmp_path / "backups" / "copy.db"
    assert mode(target) == 0o600
    copy = sqlite3.connect(target)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM inbox").fetchone()[0] == 50
    assert copy.execute("SELECT count(*) FROM inbox WHERE dedupe_key = 'uncommitted'").fetchone()[0] == 0
    copy.close()
    restored = Ledger(target)
    assert restored.pending_migrations() == []
    assert restored.verify_audit() == (1, None)


def test_backup_refuses_an_existing_target(ledger, tmp_path):
    target = tmp_path / "exists.db"
    target.write_bytes(b"precious")
    with pytest.raises(LedgerError) as info:
        ledger.backup(target)
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"precious"


def test_backup_to_an_unwritable_place_is_a_ledger_error(ledger, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LedgerError):
        ledger.backup(tmp_path / "afile" / "copy.db")


def _open_and_close(path: str, results) -> None:
    try:
        Ledger(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(repr(exc))


def test_processes_creating_a_fresh_ledger_at_once_all_succeed(tmp_path):
    """Switching a new file to WAL ignores busy_timeout; Ledger waits for the other opener."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(6):
        path = str(tmp_path / f"fresh-{attempt}.db")
        results = ctx.Queue()
        procs = [ctx.Process(target=_open_and_close, args=(path, results)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        outcomes += [results.get(timeout=10) for _ in procs]
    assert outcomes == ["ok"] * 18


def test_a_failing_upgrade_retried_every_minute_writes_one_backup(tmp_path, monkeypatch):
    """cron retries a failed upgrade each minute: it must not write a full copy each time."""
    from iptvsync.ledger.migrations import migrations

    path = tmp_path / "ledger.db"
    Ledger(path).close()
    monkeypatch.setattr(migrations, "pending_names", lambda conn: ["m999_broken"])

    def broken(database):
        raise RuntimeError("the upgrade fails")

    monkeypatch.setattr(migrations, "apply", broken, raising=False)  # found through __getattr__
    for _ in range(3):
        with pytest.raises(RuntimeError):
            Ledger(path)
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == ["iptvsync-before-m999_broken.db"]
