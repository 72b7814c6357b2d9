"""Issue 20: every query the admin console runs reaches the big tables (inbox, audit, charges,
subscriptions, outbox, runs) through an index or a rowid range, by SQLite's own ``EXPLAIN QUERY
PLAN`` of the statements the real ``ops`` functions run; lists page by key, never by OFFSET.
The one scan on purpose: a part of a buyer's name (``LIKE '%…%'``), tried only when nothing
matched exactly. bench/admin.py times them on a 100,000-subscription ledger."""

from __future__ import annotations

import pytest
from support.postbacks import deliver, payload

from iptvsync.engine.runner import run_process
from iptvsync.ops import dashboard, search, subs, timeline

BIG = ("inbox", "audit", "charges", "subscriptions", "outbox", "runs", "grants")


def selects(ledger, call) -> list[str]:
    statements: list[str] = []
    ledger.conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        ledger.conn.set_trace_callback(None)
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def scans(ledger, sql: str) -> list[str]:
    plan = [row[3] for row in ledger.conn.execute("EXPLAIN QUERY PLAN " + sql)]
    newest_one = "ORDER BY id DESC LIMIT 1" in sql and " WHERE " not in sql  # a rowid walk of one row
    return [d for d in plan for t in BIG if d.startswith(f"SCAN {t}") and not newest_one
            and not d.endswith("USING COVERING INDEX subs_expiry")]


@pytest.fixture
def shop(cfg, ledger):
    deliver(ledger, payload(2))
    deliver(ledger, payload(2, sale="51000002", subscription="1104371", email="joao@example.com"))
    run_process(cfg)
    return subs.find(ledger, "maria@example.com")


@pytest.mark.parametrize("name", ["search email", "search sale", "search username", "search subscription code",
                                  "search id", "list", "list by state", "list by product", "page 2",
                                  "postbacks", "postbacks applied", "postbacks held", "postbacks by sale",
                                  "postbacks by email", "audit", "audit by email", "audit by action", "audit page 2",
                                  "timeline", "painel"])
def test_console_queries_use_an_index(name, cfg, ledger, shop):
    calls = {
        "search email": lambda: search.subscriptions(ledger, cfg, q="maria@example.com"),
        "search sale": lambda: search.subscriptions(ledger, cfg, q="51000001"),
        "search username": lambda: search.subscriptions(ledger, cfg, q=shop["username"]),
        "search subscription code": lambda: search.subscriptions(ledger, cfg, q="1104370"),
        "search id": lambda: search.subscriptions(ledger, cfg, q=str(shop["id"])),
        "list": lambda: search.subscriptions(ledger, cfg),
        "list by state": lambda: search.subscriptions(ledger, cfg, state="active"),
        "list by product": lambda: search.subscriptions(ledger, cfg, product="145388"),
        "page 2": lambda: search.subscriptions(ledger, cfg, before=2),
        "postbacks": lambda: search.postbacks(ledger),
        "postbacks applied": lambda: search.postbacks(ledger, status="applied", before=5),
        "postbacks held": lambda: search.postbacks(ledger, status="held"),
        "postbacks by sale": lambda: search.postbacks(ledger, q="51000001"),
        "postbacks by email": lambda: search.postbacks(ledger, q="maria@example.com"),
        "audit": lambda: search.audit(ledger),
        "audit by email": lambda: search.audit(ledger, email="maria@example.com"),
        "audit by action": lambda: search.audit(ledger, action="panel"),
        "audit page 2": lambda: search.audit(ledger, before=3),
        "timeline": lambda: timeline.timeline(ledger, shop),
        "painel": lambda: dashboard.painel(ledger, cfg),
    }
    statements = selects(ledger, calls[name])
    assert statements
    for sql in statements:
        assert "OFFSET" not in sql.upper(), sql
        assert not scans(ledger, sql), (sql, scans(ledger, sql))


def test_a_part_of_a_name_is_the_one_scan_and_only_when_nothing_matched(cfg, ledger, shop):
    ledger.conn.execute("UPDATE subscriptions SET buyer_name = 'Joana Teste' WHERE id = ?", (shop["id"],))
    exact = selects(ledger, lambda: search.subscriptions(ledger, cfg, q="maria@example.com"))
    assert not any("LIKE" in sql for sql in exact)
    found = search.subscriptions(ledger, cfg, q="joana")
    assert [r["id"] for r in found] == [shop["id"]]


def test_painel_figures_count_each_window_in_sao_paulo_days(cfg, ledger):
    from freezegun import freeze_time

    paid = {"51000011": "2026-12-20 00:30:00",   # today in São Paulo (03:30Z)
            "51000012": "2026-12-19 23:30:00",   # yesterday there, though 02:30Z today in UTC
            "51000013": "2026-12-14 10:00:00",   # 6 days before: in the 7 days
            "51000014": "2026-11-21 10:00:00",   # 29 days before: in the 30 days
            "51000015": "2026-11-19 10:00:00"}   # 31 days before: in none
    for n, (sale, at) in enumerate(paid.items()):
        deliver(ledger, payload(2, sale=sale, subscription=f"220000{n}", paid=at, email=f"b{n}@example.com"))
    with freeze_time("2026-12-20T15:00:00Z"):
        run_process(cfg)
        figures = dashboard.figures(ledger, dashboard.now())
    assert {w: figures[w]["sales"] for w in figures} == {"today": 1, "7d": 3, "30d": 4}
    assert {w: figures[w]["activations"] for w in figures} == {"today": 5, "7d": 5, "30d": 5}
    assert figures["30d"]["renewals"] == figures["30d"]["refunds"] == figures["30d"]["cancellations"] == 0
