"""``reconcile monetizze`` against a fake API 2.1, ``reconcile panel`` against fake panels."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from support.install import BASE_TOML, CHAVE, write_install
from support.monetizze import FakeMonetizze, api_row
from support.postbacks import deliver, payload
from support.xui import FakeXuiAdmin
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import SAO_PAULO, now
from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger import inbox
from iptvsync.ledger.db import Ledger
from iptvsync.panels.dry_run import DryRunPanel

_register()


def invoke(config, *args):
    return CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)


def sao_paulo(hours_ago: float) -> str:
    return (now() - timedelta(hours=hours_ago)).astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")


def sale(code: str, *, event: int = 2, started_h: float = 3, paid_h: float = 2, **kwargs) -> dict:
    """A postback payload for sale ``code``, created ``started_h`` and paid ``paid_h`` hours ago."""
    kwargs.setdefault("subscription", f"9{code}")
    p = payload(event, sale=code, paid=sao_paulo(paid_h), **kwargs)
    p["venda"]["dataInicio"] = sao_paulo(started_h)
    return p


@pytest.fixture
def api():
    with FakeMonetizze() as fake:
        yield fake


@pytest.fixture
def shop(tmp_path, api):
    """An install (dry-run panel) whose [monetizze] api_url is the fake; returns config.toml."""
    toml = BASE_TOML + f'\n[monetizze]\napi_url = "{api.url}"\n'
    return write_install(tmp_path / "shop", toml, env={"MONETIZZE_CONSUMER_KEY": api.consumer_key})


@pytest.fixture
def ledger(shop):
    led = Ledger(load_config(shop).ledger_path)
    yield led
    led.close()


def reconcile(shop, *args) -> dict:
    result = invoke(shop, "reconcile", "monetizze", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def count(ledger, table: str) -> int:
    return ledger.one(f"SELECT COUNT(*) n FROM {table}")["n"]


# --- reconcile monetizze --------------------------------------------------------------------

def test_a_missed_sale_is_injected_then_provisioned_exactly_once(shop, api, ledger):
    api.sales = [api_row(sale("52000001", email="joao@example.com"))]
    report = reconcile(shop)
    assert (report["fetched"], report["known"], report["injected"], report["skipped"]) == (1, 0, 1, 0)
    [row] = report["sales"]
    assert (row["sale_code"], row["event"], row["buyer_email"], row["outcome"]) == (
        "52000001", 2, "joao@example.com", "injected")
    stored = inbox.get(ledger, ledger.one("SELECT id FROM inbox")["id"])  # the body as received
    assert (stored["source"], stored["content_type"], stored["status"]) == ("reconcile", "application/json", "pending")
    assert stored["dedupe_key"] == "52000001:2:1" and CHAVE.encode() not in stored["body"]
    assert json.loads(stored["body"])["chave_unica"] == ""

    cfg = load_config(shop)
    summary = run_process(cfg)
    assert summary["apply"]["applied"] == 1 and summary["sync"]["synced"] == 1 and summary["mail"]["sent"] == 1

    again = reconcile(shop)
    assert (again["known"], again["injected"], again["sales"]) == (1, 0, [])
    assert run_process(cfg)["apply"]["applied"] == 0
    lines = DryRunPanel("main", state_dir=cfg.ledger_path.parent).lines()
    assert len(lines) == 1 and count(ledger, "subscriptions") == 1
    assert [r["kind"] for r in ledger.query("SELECT kind FROM outbox")] == ["activation"]
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE action = 'inbox.reconciled'")["n"] == 1


def test_sales_the_receiver_stored_are_known(shop, api, ledger):
    received = sale("52000001")
    deliver(ledger, received)
    api.sales = [api_row(received), api_row(sale("52000002"))]
    report = reconcile(shop)
    assert (report["fetched"], report["known"], report["injected"]) == (2, 1, 1)
    assert [r["sale_code"] for r in report["sales"]] == ["52000002"]
    assert ledger.one("SELECT times_seen FROM inbox WHERE sale_code = '52000001'")["times_seen"] == 1


def test_pagination_reads_all_three_pages_of_each_window(shop, api):
    api.page_size = 2
    api.sales = [api_row(sale(f"5300000{i}")) for i in range(5)]
    report = reconcile(shop)
    assert api.transaction_pages() == [1, 2, 3, 1, 2, 3]
    assert [(w["by"], w["pages"], w["rows"], w["record_count"]) for w in report["windows"]] == [
        ("created", 3, 5, 5), ("finalized", 3, 5, 5)]
    assert (report["pages"], report["fetched"], report["injected"], report["warnings"]) == (6, 5, 5, [])


def test_rows_as_a_php_object_are_read_too(shop, api):
    api.dados_as_object = True
    api.sales = [api_row(sale("53100001")), api_row(sale("53100002"))]
    assert reconcile(shop)["injected"] == 2


def test_a_late_payment_of_an_old_boleto_is_found_by_its_payment_date(shop, api):
    api.sales = [api_row(sale("54000001", started_h=5 * 24, paid_h=1))]
    report = reconcile(shop, "--since", "2d")
    assert [(w["by"], w["rows"]) for w in report["windows"]] == [("created", 0), ("finalized", 1)]
    assert report["injected"] == 1


def test_window_is_sent_in_sao_paulo_time_and_no_secret_goes_in_a_url(shop, api):
    reconcile(shop, "--since", "12h")
    token_request, created, finalized = api.requests
    assert token_request[0] == "/2.1/token"
    fmt = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
    assert fmt.fullmatch(created[1]["date_min"][0]) and fmt.fullmatch(finalized[1]["end_date_max"][0])
    assert abs(int(created[1]["date_min"][0][11:13]) - int(sao_paulo(12)[11:13])) <= 1
    assert all(api.consumer_key not in raw for _, _, raw in api.requests)


@pytest.mark.parametrize("in_body_only", [False, True], ids=["http-403", "status-403-in-body"])
def test_an_expired_token_is_refreshed_once(shop, api, in_body_only):
    api.token_uses, api.errors_in_body_only = 1, in_body_only  # expires after one request
    api.sales = [api_row(sale("55000001"))]
    report = reconcile(shop)
    assert (api.tokens_issued, api.refused, report["injected"]) == (2, 1, 1)


def test_a_refused_fresh_token_is_an_error(shop, api, ledger):
    api.token_uses = 0
    api.sales = [api_row(sale("55000001"))]
    result = invoke(shop, "reconcile", "monetizze")
    assert result.exit_code == 1 and "fresh token was refused" in result.stderr
    assert api.tokens_issued == 2 and count(ledger, "inbox") == 0


TROUBLE = [
    ({"down": True}, "HTTP 503"),
    ({"down": "close"}, "cannot connect"),
    ({"nonjson": True}, "not a JSON object"),
    ({"body_status": 500, "error_text": "chave ck-9f8e7d6c5b4a invalida"}, "status 500"),
]


@pytest.mark.parametrize("where", ["token", "transactions", "page-2"])
@pytest.mark.parametrize("knob, says", TROUBLE, ids=["503", "closed", "nonjson", "status-500"])
def test_api_trouble_is_one_line_exit_1_with_no_secret(shop, api, ledger, knob, says, where):
    api.page_size = 1
    api.sales = [api_row(sale("56000001")), api_row(sale("56000002"))]
    api.trouble_when = {"token": lambda path, query: path.endswith("/token"),
                        "transactions": lambda path, query: path.endswith("/transactions"),
                        "page-2": lambda path, query: query.get("page") == ["2"]}[where]
    for name, value in knob.items():
        setattr(api, name, value)
    result = invoke(shop, "reconcile", "monetizze", "--json")
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: Monetizze API (127.0.0.1:") and says in result.stderr
    assert api.consumer_key not in result.stderr and all(t not in result.stderr for t in api._tokens)
    assert count(ledger, "inbox") == 0  # all or nothing: a half-read window injects nothing


def test_a_refused_consumer_key_is_an_error(shop, api, ledger):
    api.consumer_key = "another-key"
    result = invoke(shop, "reconcile", "monetizze")
    assert result.exit_code == 1 and "consumer key was refused" in result.stderr
    assert "ck-9f8e7d6c5b4a" not in result.stderr and count(ledger, "inbox") == 0


def test_no_consumer_key_is_a_config_error(tmp_path, api):
    config = write_install(tmp_path / "nokey", BASE_TOML + f'\n[monetizze]\napi_url = "{api.url}"\n')
    result = invoke(config, "reconcile", "monetizze")
    assert result.exit_code == 2 and "MONETIZZE_CONSUMER_KEY is not set" in result.stderr
    assert api.requests == []


def test_dry_run_injects_nothing(shop, api, ledger):
    api.sales = [api_row(sale("57000001"))]
    report = reconcile(shop, "--dry-run")
    assert (report["dry_run"], report["new"], report["injected"]) == (True, 1, 0)
    assert report["sales"][0]["outcome"] == "would inject"
    assert count(ledger, "inbox") == 0 and count(ledger, "audit") == 0


def test_an_unmapped_product_is_stored_and_ends_unmapped(shop, api, ledger):
    api.sales = [api_row(sale("58000001", product="999"))]
    report = reconcile(shop)
    assert (report["injected"], report["unmapped"], report["sales"][0]["mapped"]) == (1, 1, False)
    run_process(load_config(shop))
    assert ledger.one("SELECT status FROM inbox")["status"] == "unmapped"


def test_ambiguous_rows_are_reported_and_never_stored(shop, api, ledger):
    received = sale("59000003")
    deliver(ledger, received)
    unreadable = api_row(sale("59000001"))
    unreadable["venda"]["status"] = "Ativa"  # a subscription status where a sale status belongs
    no_paid_date = api_row(sale("59000002"))
    no_paid_date["venda"]["dataFinalizada"] = "0000-00-00 00:00:00"
    no_subscription = api_row(received)  # the same sale without its assinatura block, now Completa
    no_subscription.pop("assinatura")
    no_subscription["venda"]["status"] = "Completa"
    api.sales = [unreadable, no_paid_date, no_subscription]
    report = reconcile(shop)
    assert (report["skipped"], report["injected"]) == (3, 0)
    reasons = {r["sale_code"]: r["reason"] for r in report["sales"]}
    assert "no sale status" in reasons["59000001"]
    assert "without a payment date" in reasons["59000002"]
    assert "check by hand" in reasons["59000003"]
    assert count(ledger, "inbox") == 1
    run_process(load_config(shop))
    assert count(ledger, "subscriptions") == 1


def test_table_output_says_what_to_do_next(shop, api):
    api.sales = [api_row(sale("60000001"))]
    result = invoke(shop, "reconcile", "monetizze")
    assert result.exit_code == 0
    assert "60000001" in result.stdout and "1 injected" in result.stdout and "iptvsync process" in result.stdout


# --- reconcile panel ------------------------------------------------------------------------

PANEL_KEY = "xui-api-key-5e4d3c2b1a"


@pytest.fixture
def xui():
    with FakeXuiAdmin(api_key=PANEL_KEY) as fake:
        yield fake


@pytest.fixture
def xui_shop(tmp_path, xui):
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{xui.url}"\ntimeout_s = 2')
    config = write_install(tmp_path / "xui", toml, env={"PANEL_MAIN_API_KEY": PANEL_KEY})
    cfg = load_config(config)
    ledger = Ledger(cfg.ledger_path)
    deliver(ledger, sale("61000001", paid_h=0.1))
    run_process(cfg)
    yield config, cfg, ledger
    ledger.close()


def drift(config, *args) -> dict:
    result = invoke(config, "reconcile", "panel", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_line_disabled_behind_our_back_is_detected_and_repaired(xui_shop, xui):
    config, cfg, ledger = xui_shop
    assert drift(config) == {"checked": 1, "in_sync": 1, "drift": 0, "errors": 0, "fixed": 0, "subscriptions": []}
    [line_id] = xui.lines
    xui.lines[line_id]["enabled"] = 0

    report = drift(config)
    [row] = report["subscriptions"]
    assert report["drift"] == 1 and "enabled is False, want True" in row["drift"] and not row["fixed"]
    assert ledger.one("SELECT sync_status FROM subscriptions")["sync_status"] == "synced"

    assert drift(config, "--fix")["fixed"] == 1
    sub = ledger.one("SELECT sync_status, attempts, run_after FROM subscriptions")
    assert sub == {"sync_status": "pending", "attempts": 0, "run_after": None}
    assert ledger.one("SELECT action FROM audit ORDER BY id DESC LIMIT 1")["action"] == "reconcile.drift"
    assert xui.lines[line_id]["enabled"] == 0  # reconcile itself never writes to the panel

    assert run_process(cfg)["sync"]["synced"] == 1
    assert int(xui.lines[line_id]["enabled"]) == 1
    assert drift(config)["drift"] == 0


def test_a_missing_line_is_recreated(xui_shop, xui):
    config, cfg, ledger = xui_shop
    xui.lines.clear()
    report = drift(config, "--fix")
    assert report["subscriptions"][0]["drift"] == "line missing" and report["fixed"] == 1
    run_process(cfg)
    [line] = xui.lines.values()
    sub = ledger.one("SELECT * FROM subscriptions")
    assert line["username"] == sub["username"] and str(line["id"]) == sub["line_id"]
    assert [r["kind"] for r in ledger.query("SELECT kind FROM outbox")] == ["activation"]  # no second email
    assert drift(config)["in_sync"] == 1


def test_an_unreadable_panel_exits_1_without_its_key(xui_shop, xui):
    config, _, ledger = xui_shop
    xui.down = True
    result = invoke(config, "reconcile", "panel", "--fix", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["errors"], report["fixed"]) == (1, 0) and "HTTP 503" in report["subscriptions"][0]["error"]
    assert PANEL_KEY not in result.stdout + result.stderr
    assert ledger.one("SELECT sync_status FROM subscriptions")["sync_status"] == "synced"


def test_dry_run_panel_lines_are_checked_too(shop, ledger):
    deliver(ledger, sale("62000001", paid_h=0.1))
    run_process(load_config(shop))
    assert drift(shop)["in_sync"] == 1
    result = invoke(shop, "reconcile", "panel")
    assert result.exit_code == 0 and "1 in sync" in result.stdout


def test_every_reconcile_command_has_help():
    for args in (["reconcile", "--help"], ["reconcile", "monetizze", "--help"], ["reconcile", "panel", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_a_refund_found_by_sale_code_is_applied_to_that_sales_charge(shop, api, ledger):
    """The API row of a refund may lack assinatura/parcela (or differ from the postbacks):
    skipped, the refunded buyer's line kept running. It is re-keyed to the sale's charge."""
    received = sale("59100001")
    deliver(ledger, received)
    cfg = load_config(shop)
    run_process(cfg)
    refund = api_row(received)
    refund.pop("assinatura")
    refund["venda"]["status"] = "Devolvida"
    api.sales = [refund]
    report = reconcile(shop)
    assert (report["injected"], report["skipped"]) == (1, 0)
    assert "refund applied to the sale's charge (subscription 959100001 parcela 1)" in report["sales"][0]["reason"]
    run_process(cfg)
    assert ledger.one("SELECT status FROM charges")["status"] == "refunded"
    sub = ledger.one("SELECT * FROM subscriptions")
    assert (sub["desired_enabled"], count(ledger, "subscriptions")) == (0, 1)
    assert reconcile(shop)["injected"] == 0  # the same refund again is known
