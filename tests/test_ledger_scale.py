"""What keeps a big ledger fast and small: an index behind every filter the CLI offers (proved
by SQLite's own ``EXPLAIN QUERY PLAN`` of the statements the real functions run), raw bodies
compressed once settled and prunable, the ``runs`` table pruned, ``audit verify`` incremental."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
from freezegun import freeze_time
from support.postbacks import deliver, payload

from iptvsync.clock import now
from iptvsync.engine.runner import run_process
from iptvsync.engine.sweep import sweep
from iptvsync.ledger import inbox
from iptvsync.ledger.audit import query_audit
from iptvsync.ledger.db import Ledger
from iptvsync.monetizze.form import build_form
from iptvsync.monetizze.postback import facts_version, from_facts, parse
from iptvsync.ops.health import health

T0 = "2026-11-20T18:00:00Z"
FORM = "application/x-www-form-urlencoded"


def plans_of(ledger: Ledger, call) -> dict[str, list[str]]:
    """Run ``call()`` and return, for each SELECT it ran, SQLite's query plan (its detail lines)."""
    statements: list[str] = []
    ledger.conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        ledger.conn.set_trace_callback(None)
    return {sql: [row[3] for row in ledger.conn.execute("EXPLAIN QUERY PLAN " + sql)]
            for sql in statements if sql.lstrip().upper().startswith("SELECT")}


def uses(plans: dict[str, list[str]], index: str, table: str) -> bool:
    """Some statement reads ``table`` through ``index``, and none of them scans ``table``."""
    details = [d for plan in plans.values() for d in plan]
    return (any(f"INDEX {index}" in d for d in details)
            and not any(d.startswith(f"SCAN {table}") for d in details))


@freeze_time(T0)
def test_logs_since_uses_the_audit_time_index(ledger):
    ledger.audit("charge.paid", actor="t")
    plans = plans_of(ledger, lambda: query_audit(ledger, since=now() - timedelta(minutes=1)))
    assert uses(plans, "audit_at", "audit"), plans


@freeze_time(T0)
def test_logs_action_uses_the_audit_action_index(ledger):
    for action in ("panel.created", "panel.updated", "email.sent"):
        ledger.audit(action, actor="t")
    plans = plans_of(ledger, lambda: query_audit(ledger, action="panel"))
    assert uses(plans, "audit_action", "audit"), plans
    assert [row["action"] for row in query_audit(ledger, action="panel")] == ["panel.created", "panel.updated"]
    assert [row["action"] for row in query_audit(ledger, action="email.sent")] == ["email.sent"]


def test_logs_email_uses_the_buyer_email_indexes(ledger):
    plans = plans_of(ledger, lambda: query_audit(ledger, email="maria@example.com"))
    assert uses(plans, "audit_email", "audit") and uses(plans, "subs_email", "subscriptions"), plans



def test_logs_email_finds_everything_about_a_buyer_with_the_partial_index(cfg, ledger):
    """``audit_email`` holds only the rows ``logs --email`` cannot reach through a subscription
    (m012). Support still finds, by email: the rows about the buyer's subscriptions, the rows
    about none (an unmapped product), and a held postback an operator attached to another
    buyer's subscription, by either buyer's email."""
    from iptvsync.ledger.inbox import attach

    with freeze_time(T0):
        deliver(ledger, payload(2, sale="51000001", subscription="1104370", email="maria@example.com"))
        deliver(ledger, payload(2, sale="51000002", subscription="1104371", email="joao@example.com"))
        deliver(ledger, payload(2, sale="51000003", product="999999", email="joao@example.com"))  # unmapped
        run_process(cfg)
        held = payload(2, sale="51000004", subscription=None, email="joao@example.com")
        held["plano"]["periodicidade"] = "Mensal"  # a plan's charge without assinatura: held
        held_id = deliver(ledger, held)
        run_process(cfg)
        maria = ledger.one("SELECT id FROM subscriptions WHERE buyer_email = 'maria@example.com'")["id"]
        attach(ledger, held_id, str(maria))  # the operator puts it on maria's subscription
        run_process(cfg)
    joao = {row["action"] for row in query_audit(ledger, email="joao@example.com")}
    assert {"charge.paid", "panel.created", "email.sent", "inbox.unmapped", "inbox.held",
            "inbox.attached"} <= joao, joao
    maria_rows = query_audit(ledger, email="maria@example.com")
    assert {"charge.paid", "panel.created", "email.sent", "inbox.attached"} <= {r["action"] for r in maria_rows}
    assert {r["subscription_id"] for r in maria_rows} == {maria}
    plans = plans_of(ledger, lambda: query_audit(ledger, email="joao@example.com"))
    assert uses(plans, "audit_email", "audit") and uses(plans, "subs_email", "subscriptions"), plans


@freeze_time(T0)
def test_an_audit_row_about_a_subscription_carries_its_email(cfg, ledger):
    """What m012's partial ``audit_email`` relies on: apart from ``inbox.attached``, a row about a
    subscription names that subscription's buyer (or nobody), through a whole lifecycle:
    purchase, renewal, emails, a dispute, a refund, a cancellation, operator actions."""
    from iptvsync.ops import subs

    deliver(ledger, payload(2, parcela=1))
    run_process(cfg)
    deliver(ledger, payload(2, sale="51000011", parcela=2))
    deliver(ledger, payload(5, sale="51000011", parcela=2))
    run_process(cfg)
    subs.set_hold(ledger, cfg, "1", "suspended")
    subs.set_hold(ledger, cfg, "1", "resumed")
    subs.extend(ledger, cfg, "1", 3, "gift-1")
    subs.resend(ledger, "1", "activation")
    deliver(ledger, payload(4, sale="51000011", parcela=2))
    deliver(ledger, payload(103, sale="51000011", parcela=2))
    run_process(cfg)
    subs.cancel(ledger, cfg, "1", immediately=True)
    run_process(cfg)
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE subscription_id IS NOT NULL")["n"] >= 8
    strays = ledger.query("SELECT a.id, a.action, a.buyer_email FROM audit a JOIN subscriptions s"
                          " ON s.id = a.subscription_id WHERE a.buyer_email IS NOT s.buyer_email"
                          " AND a.buyer_email IS NOT NULL AND a.action != 'inbox.attached'")
    assert strays == []

@freeze_time(T0)
def test_inbox_list_since_uses_the_received_at_index(ledger):
    deliver(ledger, payload(2))
    plans = plans_of(ledger, lambda: inbox.list_inbox(ledger, since=now() - timedelta(hours=1)))
    assert uses(plans, "inbox_received", "inbox"), plans
    assert len(inbox.list_inbox(ledger, since=now() - timedelta(hours=1))) == 1


def test_status_finds_the_last_run_by_its_index(cfg, ledger):
    run_process(cfg)
    # health() opens its own connection: explain the statement it runs for the last run
    plan = [row[3] for row in ledger.conn.execute("EXPLAIN QUERY PLAN SELECT MAX(finished_at) FROM runs")]
    assert plan == ["SEARCH runs USING COVERING INDEX runs_finished"]
    assert health(cfg)["facts"]["last_run"] is not None


def test_the_sweep_reads_expiries_and_reminders_by_index(cfg, ledger):
    plans = plans_of(ledger, lambda: sweep(ledger, cfg, datetime(2026, 12, 1, tzinfo=UTC)))
    assert uses(plans, "subs_expiry", "subscriptions") and uses(plans, "subs_paid_until", "subscriptions"), plans



@freeze_time(T0)
def test_applying_a_renewal_reads_every_table_by_index(cfg, ledger):
    """The apply stage runs for every postback: a renewal of a subscription with charges and a
    grant reads charges, grants, subscriptions, outbox and audit by index, never whole."""
    from iptvsync.engine.apply import apply_inbox

    deliver(ledger, payload(2, sale="70000001", subscription="5000001", parcela=1))
    apply_inbox(ledger, cfg, now())
    sub = ledger.one("SELECT id FROM subscriptions")["id"]
    ledger.conn.execute("INSERT INTO grants (grant_key, subscription_id, days, granted_at, actor)"
                        " VALUES ('g1', ?, 3, ?, 't')", (sub, T0))
    deliver(ledger, payload(2, sale="70000002", subscription="5000001", parcela=2))
    plans = plans_of(ledger, lambda: apply_inbox(ledger, cfg, now()))
    # the audit chain's last hash: a walk down the rowid that stops at the first row
    last_hash = plans.pop("SELECT hash FROM audit ORDER BY id DESC LIMIT 1")
    assert last_hash == ["SCAN audit"]
    details = [d for plan in plans.values() for d in plan]
    assert any("INDEX charges_sub" in d for d in details) and any("INDEX grants_sub" in d for d in details), plans
    for table in ("charges", "grants", "subscriptions", "outbox", "audit"):
        assert not any(d.startswith(f"SCAN {table}") for d in details), (table, plans)
    assert ledger.one("SELECT COUNT(*) n FROM charges WHERE subscription_id = ?", (sub,))["n"] == 2


# --- retention ------------------------------------------------------------------------------

def test_bodies_are_stored_compressed_and_read_back_as_received(cfg, ledger):
    """Every body is compressed as it is stored, whatever becomes of it (applied, ignored,
    unmapped), and reads back byte for byte: in ``inbox show``, in ``process``, in a replay."""
    test_button = payload(2, sale="51000002")
    test_button["produto"]["nome"] = "X-Wing"  # stored as ignored
    sent = {"applied": payload(2), "ignored": test_button, "unmapped": payload(2, product="999999", sale="51000009")}
    with freeze_time(T0):
        ids = {name: deliver(ledger, p) for name, p in sent.items()}
        summary = run_process(cfg)
    assert summary["apply"]["applied"] == 1 and summary["compressed"] == 0  # nothing left raw to compress
    # the encoding is plain zlib with the preset dictionary shipped in the package
    zdict = resources.files("iptvsync").joinpath("data/inbox-zdict-1.bin").read_bytes()
    for name, inbox_id in ids.items():
        raw = build_form(sent[name])
        stored = ledger.one("SELECT status, body, body_encoding FROM inbox WHERE id = ?", (inbox_id,))
        assert stored["status"] == name and stored["body_encoding"] == inbox.ZDICT
        assert len(stored["body"]) < len(raw) / 4
        unpack = zlib.decompressobj(15, zdict)
        assert unpack.decompress(stored["body"]) + unpack.flush() == raw
        assert inbox.get(ledger, inbox_id)["body"] == raw  # `inbox show` reads it as received
    # replayed, the applied one is applied again from its compressed body
    assert inbox.retry(ledger, [ids["applied"]], action="inbox.replay") == 1
    with freeze_time(T0):
        assert run_process(cfg)["apply"]["applied"] == 1


def test_the_apply_stage_reads_the_facts_kept_with_a_row_and_parses_a_body_only_without_them(
        cfg, ledger, monkeypatch):
    """The writer parses each pending body as it stores it and keeps what the parser made of
    it (``inbox_facts``) until the row is settled; the apply stage reads that instead of
    parsing the body again. Facts an older parser left (another fingerprint) are not trusted:
    that body is parsed, and what it says is applied."""
    from iptvsync.engine import apply as apply_stage

    parsed = []
    real_parse = apply_stage.parse
    monkeypatch.setattr(apply_stage, "parse", lambda body, ct: parsed.append(body) or real_parse(body, ct))
    fresh, stale = payload(2), payload(2, sale="51000002", subscription="1104372", email="jo@example.com")
    with freeze_time(T0):
        fresh_id, stale_id = deliver(ledger, fresh), deliver(ledger, stale)
        deliver(ledger, fresh)  # a duplicate: counted on its row, no second copy of the facts
    facts = {r["inbox_id"]: r["facts"] for r in ledger.query("SELECT * FROM inbox_facts")}
    assert set(facts) == {fresh_id, stale_id}
    assert from_facts(facts[fresh_id]) == replace(parse(build_form(fresh), FORM)[1], chave_unica=None,
                                                  product_key=None)
    version, fields = json.loads(facts[stale_id])
    assert version == facts_version()
    fields["sale_code"] = "99999999"  # what an older parser might have made of it
    ledger.conn.execute("UPDATE inbox_facts SET facts = ? WHERE inbox_id = ?", (json.dumps(["0" * 16, fields]),
                                                                                stale_id))

    with freeze_time(T0):
        assert run_process(cfg)["apply"]["applied"] == 2
    assert parsed == [build_form(stale)]  # the fresh row's body was never parsed again
    assert [r["sale_code"] for r in ledger.query("SELECT sale_code FROM charges ORDER BY sale_code")] == [
        "51000001", "51000002"]
    # settled rows keep no copy: the table holds facts only while their rows wait
    assert ledger.query("SELECT * FROM inbox_facts") == []


def test_facts_go_whichever_way_a_row_is_settled_and_take_no_room_in_the_inbox(cfg, ledger):
    """A trigger deletes a row's facts as soon as its status leaves pending, whoever changes it
    (applied, parked as unmapped, or an operator), and a row requeued later is parsed from its
    body. The inbox row itself never held them, so its pages keep no dead space."""
    with freeze_time(T0):
        unmapped = deliver(ledger, payload(2, product="999999", sale="51000009"))
        waiting = deliver(ledger, payload(2, sale="51000003", subscription="1104373"))
    assert {r["inbox_id"] for r in ledger.query("SELECT inbox_id FROM inbox_facts")} == {unmapped, waiting}
    ledger.conn.execute("UPDATE inbox SET status = 'ignored', reason = 'operator' WHERE id = ?", (waiting,))
    with freeze_time(T0):
        run_process(cfg)
    assert ledger.one("SELECT status FROM inbox WHERE id = ?", (unmapped,))["status"] == "unmapped"
    assert ledger.query("SELECT * FROM inbox_facts") == []
    assert "facts" not in {c["name"] for c in ledger.query("PRAGMA table_info(inbox)")}
    # requeued (as `inbox retry` does), it is parsed from its body: still unmapped, for the same reason
    inbox.retry(ledger, [unmapped])
    with freeze_time(T0):
        assert run_process(cfg)["apply"]["unmapped"] == 1


def test_raw_bodies_a_ledger_kept_are_read_and_compressed_once_settled(cfg, ledger):
    """A ledger filled by an older version holds raw bodies (``body_encoding`` NULL): pending
    ones are applied as they are, settled ones are compressed by ``process``."""
    with freeze_time(T0):
        ids = [deliver(ledger, payload(2, sale=f"5100001{i}", subscription=f"110437{i}")) for i in range(2)]
        raws = [inbox.get(ledger, i)["body"] for i in ids]
        for inbox_id, raw in zip(ids, raws, strict=True):
            ledger.conn.execute("UPDATE inbox SET body = ?, body_encoding = NULL WHERE id = ?", (raw, inbox_id))
        summary = run_process(cfg)
    assert summary["apply"]["applied"] == 2 and summary["compressed"] == 2
    for inbox_id, raw in zip(ids, raws, strict=True):
        assert ledger.one("SELECT body_encoding FROM inbox WHERE id = ?", (inbox_id,))["body_encoding"] == inbox.ZDICT
        assert inbox.get(ledger, inbox_id)["body"] == raw


def test_prune_drops_old_bodies_and_keeps_facts_and_audit(cfg, ledger):
    with freeze_time("2025-09-01T12:00:00Z"):
        old = deliver(ledger, payload(2, sale="51000001", paid="2025-09-01 09:00:00"))
        run_process(cfg)
    with freeze_time(T0):
        recent = deliver(ledger, payload(2, sale="51000002", parcela=2))
        run_process(cfg)
        audit_rows = ledger.one("SELECT COUNT(*) n FROM audit")["n"]
        assert inbox.prune_bodies(ledger, now() - timedelta(days=400)) == 1
        assert inbox.prune_bodies(ledger, now() - timedelta(days=400)) == 0  # once
    pruned = inbox.get(ledger, old)
    assert pruned["body"] == b"" and (pruned["sale_code"], pruned["status"], pruned["buyer_email"]) == (
        "51000001", "applied", "maria@example.com")
    assert inbox.get(ledger, recent)["body"]
    assert ledger.one("SELECT COUNT(*) n FROM audit")["n"] == audit_rows + 1  # one more: inbox.pruned
    assert ledger.verify_audit() == (audit_rows + 1, None)
    assert inbox.retry(ledger, [old]) == 0  # nothing left to apply it from


def test_inbox_prune_command(install, cfg, ledger):
    from typer.testing import CliRunner

    from iptvsync.cli import _register, app

    _register()
    with freeze_time("2025-09-01T12:00:00Z"):
        deliver(ledger, payload(2, paid="2025-09-01 09:00:00"))
        run_process(cfg)
    with freeze_time(T0):
        result = CliRunner().invoke(app, ["--config", str(install), "inbox", "prune", "--older-than", "400d"],
                                    catch_exceptions=False)
        assert result.exit_code == 0 and result.stdout.startswith("1 raw postback body(ies) received before")
        bad = CliRunner().invoke(app, ["--config", str(install), "inbox", "prune", "--older-than", "soon"])
    assert bad.exit_code == 2 and "invalid duration 'soon'" in bad.output


def test_runs_older_than_the_retention_are_deleted(cfg, ledger):
    with freeze_time("2026-09-01T12:00:00Z"):
        run_process(cfg)
    with freeze_time(T0):
        run_process(cfg)
    assert [r["started_at"] for r in ledger.query("SELECT started_at FROM runs")] == [T0]


# --- audit verify ---------------------------------------------------------------------------

def test_audit_verify_goes_on_from_its_checkpoint(ledger):
    for i in range(5):
        ledger.audit("charge.paid", actor="t", n=i)
    assert ledger.verify_audit(incremental=True) == (5, None)
    for i in range(3):
        ledger.audit("charge.paid", actor="t", n=10 + i)
    statements: list[str] = []
    ledger.conn.set_trace_callback(statements.append)
    assert ledger.verify_audit(incremental=True) == (8, None)
    ledger.conn.set_trace_callback(None)
    assert any("WHERE id > 5" in sql for sql in statements)  # only the new rows were read


def test_a_tampered_old_row_needs_full(ledger):
    for i in range(5):
        ledger.audit("charge.paid", actor="t", n=i)
    assert ledger.verify_audit(incremental=True) == (5, None)
    second = ledger.query("SELECT id FROM audit ORDER BY id")[1]["id"]
    ledger.conn.execute("UPDATE audit SET detail = '{\"n\": 700}' WHERE id = ?", (second,))
    assert ledger.verify_audit(incremental=True) == (5, None)  # before the checkpoint: not read again
    assert ledger.verify_audit() == (1, second)  # the full verification finds it


def test_a_tampered_checkpoint_row_is_found(ledger):
    for i in range(3):
        ledger.audit("charge.paid", actor="t", n=i)
    assert ledger.verify_audit(incremental=True) == (3, None)
    last = ledger.one("SELECT MAX(id) AS id FROM audit")["id"]
    ledger.conn.execute("UPDATE audit SET actor = 'someone' WHERE id = ?", (last,))
    assert ledger.verify_audit(incremental=True) == (2, last)


@pytest.mark.parametrize("rows", [[], [{"id": 2, "detail": {"n": [1, 2]}}], [{"a": "x\ny", "b": None}, {"c": "ç"}]])
def test_json_listings_are_streamed_with_the_same_text(rows, capsys):
    """``--json`` lists are written a row at a time (``subs list --limit 100000`` stays flat in
    memory), and read exactly as the whole-list ``json.dumps`` did."""
    import json

    from iptvsync.cli.output import emit

    emit(iter(rows), ("id",), as_json=True)
    assert capsys.readouterr().out == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def test_status_reads_no_big_table_whole(cfg, ledger, monkeypatch):
    """Every statement ``status`` runs reaches the inbox, audit, outbox and runs by an index."""
    import iptvsync.ledger.db as db

    statements: list[str] = []
    opened = db.Ledger.__init__

    def traced(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        self.conn.set_trace_callback(statements.append)

    monkeypatch.setattr(db.Ledger, "__init__", traced)
    health(cfg)
    selects = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert selects
    for sql in selects:
        plan = [row[3] for row in ledger.conn.execute("EXPLAIN QUERY PLAN " + sql)]
        big = ("inbox", "audit", "outbox", "runs", "subscriptions")
        scans = [d for d in plan for t in big if d.startswith(f"SCAN {t}")]
        # a partial index holds only the rows asked for: walking it is not a scan of the table
        assert all(d.endswith(("USING INDEX subs_no_email", "USING INDEX subs_phone_issue")) for d in scans), \
            (sql, plan)
