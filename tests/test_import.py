"""``iptvsync subs import``: a running shop's lines (a fake XUI panel, made by hand in its UI)
matched by email to Monetizze subscriptions (a fake transactions API), brought in as
subscriptions that own them: no email, no line change, audited, idempotent."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from support.install import BASE_TOML, write_install
from support.monetizze import FakeMonetizze, api_row
from support.postbacks import deliver, payload
from support.xui import FakeXuiAdmin
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import SAO_PAULO, now
from iptvsync.config import load_config
from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger

_register()
PANEL_KEY = "xui-api-key-5e4d3c2b1a"
DAY = 86400
WRITES = ("create_line", "edit_line", "enable_line", "disable_line", "delete_line", "ban_line", "unban_line")


def sao_paulo(days_ago: float) -> str:
    return (now() - timedelta(days=days_ago)).astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")


def sale(code: str, email: str, subscription: str, parcela: int = 3, days_ago: float = 10) -> dict:
    p = payload(2, sale=code, subscription=subscription, parcela=parcela, email=email, paid=sao_paulo(days_ago))
    p["venda"]["dataInicio"] = sao_paulo(days_ago)
    return p


@pytest.fixture
def xui():
    with FakeXuiAdmin(api_key=PANEL_KEY) as fake:
        yield fake


@pytest.fixture
def api():
    with FakeMonetizze() as fake:
        yield fake


@pytest.fixture
def shop(tmp_path, xui, api):
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{xui.url}"\ntimeout_s = 2') + (
        f'\n[monetizze]\napi_url = "{api.url}"\n')
    config = write_install(tmp_path / "shop", toml,
                           env={"PANEL_MAIN_API_KEY": PANEL_KEY, "MONETIZZE_CONSUMER_KEY": api.consumer_key})
    ledger = Ledger(load_config(config).ledger_path)
    yield config, ledger
    ledger.close()


def invoke(config, *args):
    return CliRunner().invoke(app, ["--config", str(config), *args], env={"COLUMNS": "80"}, catch_exceptions=False)


def import_json(config, *args) -> dict:
    result = invoke(config, "subs", "import", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def hand_made_lines(xui) -> dict:
    """Lines made in the panel's UI, the buyer's email in the notes as many shops keep it."""
    soon = int(time.time()) + 20 * DAY
    return {
        "maria": xui.add_line(username="maria2024", password="pw-maria-1", exp_date=soon,
                              admin_notes="Maria <maria@example.com> pix"),
        "joao": xui.add_line(username="joao2024", password="pw-joao-1", exp_date=soon + DAY,
                             reseller_notes="joao@example.com"),
        "ana": xui.add_line(username="ana2024", password="pw-ana-1", exp_date=soon,
                            admin_notes="ana@example.com"),
        "nobody": xui.add_line(username="semnome", password="pw-x", exp_date=soon),
    }


def test_dry_run_shows_matched_ambiguous_and_unmatched_and_writes_nothing(shop, xui, api):
    config, ledger = shop
    hand_made_lines(xui)
    api.sales = [api_row(sale("80000001", "maria@example.com", "7100001")),
                 api_row(sale("80000002", "ana@example.com", "7100002")),
                 api_row(sale("80000003", "ana@example.com", "7100003"))]
    report = import_json(config, "--product", "145388", "--dry-run")
    by_user = {row["username"]: row for row in report["lines"]}
    assert (by_user["maria2024"]["outcome"], by_user["maria2024"]["subscription"]) == ("matched", "7100001")
    assert by_user["maria2024"]["action"] == "would import"
    assert by_user["joao2024"]["outcome"] == "unmatched" and by_user["joao2024"]["buyer_email"] == "joao@example.com"
    assert by_user["ana2024"]["outcome"] == "ambiguous" and "7100002, 7100003" in by_user["ana2024"]["reason"]
    assert by_user["semnome"]["outcome"] == "not importable" and "no buyer email" in by_user["semnome"]["reason"]
    assert (report["matched"], report["unmatched"], report["ambiguous"], report["not importable"]) == (1, 1, 1, 1)
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 0
    table = invoke(config, "subs", "import", "--product", "145388", "--dry-run")
    assert "1 matched, 1 unmatched, 1 ambiguous, 1 not importable" in table.stdout
    assert "nothing imported (--dry-run)" in table.stdout


def test_import_owns_the_lines_without_email_or_panel_write_and_twice_changes_nothing(shop, xui, api):
    config, ledger = shop
    ids = hand_made_lines(xui)
    api.sales = [api_row(sale("80000001", "maria@example.com", "7100001"))]
    before = {line_id: dict(row) for line_id, row in xui.lines.items()}
    report = import_json(config, "--product", "145388")
    assert (report["imported"], report["matched"], report["unmatched"], report["not importable"]) == (3, 1, 2, 1)
    maria = ledger.one("SELECT * FROM subscriptions WHERE key = 'sub:7100001'")
    assert (maria["username"], maria["line_id"], maria["recurring"]) == ("maria2024", str(ids["maria"]), 1)
    assert maria["paid_until"] == datetime.fromtimestamp(before[ids["maria"]]["exp_date"], UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    joao = ledger.one("SELECT * FROM subscriptions WHERE key = 'import:main:joao2024'")
    assert (joao["buyer_email"], joao["recurring"], joao["sync_status"]) == ("joao@example.com", 0, "synced")
    assert ledger.one("SELECT COUNT(*) n FROM audit WHERE action = 'subscription.imported'")["n"] == 3
    assert "pw-maria-1" not in json.dumps(ledger.query("SELECT detail FROM audit"))
    # the Monetizze sale the imported paid_until already counts is kept as ignored evidence
    assert ledger.one("SELECT status, source FROM inbox WHERE sale_code = '80000001'") == {
        "status": "ignored", "source": "import"}

    cfg = load_config(config)
    run_process(cfg)
    assert not [a for a, _ in xui.calls if a in WRITES] and xui.lines == before
    assert ledger.one("SELECT COUNT(*) n FROM outbox")["n"] == 0

    again = import_json(config, "--product", "145388")
    assert (again["imported"], again["already imported"]) == (0, 3)
    assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 3
    assert ledger.one("SELECT COUNT(*) n FROM grants")["n"] == 3


def test_the_next_renewal_extends_the_imported_line_once(shop, xui, api):
    config, ledger = shop
    ids = hand_made_lines(xui)
    api.sales = [api_row(sale("80000001", "maria@example.com", "7100001"))]
    import_json(config, "--product", "145388")
    expiry = xui.lines[ids["maria"]]["exp_date"]
    deliver(ledger, sale("80000009", "maria@example.com", "7100001", parcela=4, days_ago=0.01))
    cfg = load_config(config)
    assert run_process(cfg)["apply"]["applied"] == 1
    assert xui.count("create_line") == 0 and len(xui.lines) == 4
    assert xui.lines[ids["maria"]]["exp_date"] == expiry + 30 * DAY + 3 * DAY  # + grace_days
    run_process(cfg)
    assert xui.lines[ids["maria"]]["exp_date"] == expiry + 33 * DAY


def test_a_csv_import_and_a_held_renewal_of_it(shop, xui, api, tmp_path):
    config, ledger = shop
    ids = hand_made_lines(xui)
    with freeze_time(now()):
        held = deliver(ledger, sale("80000020", "ana@example.com", "7100005", parcela=6, days_ago=0.01))
        run_process(load_config(config))
    assert ledger.one("SELECT status FROM inbox WHERE id = ?", (held,))["status"] == "held"
    sheet = tmp_path / "clientes.csv"
    sheet.write_text("email,product,username,paid_until,subscription\n"
                     "Ana@Example.com,145388,ana2024,2027-03-01,7100005\n"
                     "x@example.com,145388,notonpanel,2027-03-01,\n", encoding="utf-8")
    report = import_json(config, "--csv", str(sheet))
    rows = {r["username"]: r for r in report["lines"]}
    assert rows["ana2024"]["outcome"] == "matched" and rows["ana2024"]["paid_until"] == "2027-03-01T03:00:00Z"
    missing = rows["notonpanel"]
    assert missing["outcome"] == "not importable" and "not found on the panel" in missing["reason"]
    assert ledger.one("SELECT status FROM inbox WHERE id = ?", (held,))["status"] == "pending"
    run_process(load_config(config))
    ana = ledger.one("SELECT * FROM subscriptions WHERE key = 'sub:7100005'")
    assert ana["paid_until"] == "2027-03-31T03:00:00Z"  # the held renewal extended it, once
    assert xui.count("create_line") == 0 and xui.lines[ids["ana"]]["exp_date"] == ana["desired_expires_at"]


def test_usage_errors_are_one_line_exit_2(shop, tmp_path):
    config, _ = shop
    result = invoke(config, "subs", "import", "--product", "999")
    assert result.exit_code == 2 and "--product 999 is not a [products.<code>]" in result.output
    result = invoke(config, "subs", "import", "--product", "145388", "--csv", str(tmp_path / "none.csv"))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_an_unmatched_import_attached_to_a_renewal_renews_from_then_on(shop, xui, api):
    """A line imported without its Monetizze subscription: the held renewal, attached, extends
    it once and makes it recurring (grace days, no reminders); the next parcela goes by itself."""
    from iptvsync.ledger.inbox import attach

    config, ledger = shop
    ids = hand_made_lines(xui)
    import_json(config, "--product", "145388")
    joao = ledger.one("SELECT * FROM subscriptions WHERE key = 'import:main:joao2024'")
    cfg = load_config(config)
    held = deliver(ledger, sale("80000030", "joao@example.com", "7100009", parcela=8, days_ago=0.01))
    run_process(cfg)
    attach(ledger, held, str(joao["id"]))
    run_process(cfg)
    after = ledger.one("SELECT * FROM subscriptions WHERE id = ?", (joao["id"],))
    assert after["recurring"] == 1 and after["desired_expires_at"] == xui.lines[ids["joao"]]["exp_date"]
    assert xui.lines[ids["joao"]]["exp_date"] == joao["applied_expires_at"] + 33 * DAY
    deliver(ledger, sale("80000031", "joao@example.com", "7100009", parcela=9, days_ago=0.005))
    assert run_process(cfg)["apply"]["applied"] == 1
    assert xui.lines[ids["joao"]]["exp_date"] == joao["applied_expires_at"] + 63 * DAY
    assert xui.count("create_line") == 0


def test_a_reseller_panel_imports_from_a_csv_with_password_and_line_id(tmp_path):
    """The reseller API lists nothing (XC_VM api/reseller/table.php:47): the CSV names each
    line's password and id, and the line is read by id, never written."""
    from support.xui import FakeXuiReseller

    with FakeXuiReseller(api_key="k", credits=5) as fake:
        line_id = fake.add_line(username="revenda01", password="pw-revenda-1", exp_date=int(time.time()) + 9 * DAY,
                                member_id=fake.api_user["id"])
        toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-reseller"\nurl = "{fake.url}"').replace(
            "bouquets = [1, 2, 3]", "package = 7")
        config = write_install(tmp_path / "r", toml, env={"PANEL_MAIN_API_KEY": "k"})
        sheet = tmp_path / "r.csv"
        sheet.write_text("email,product,username,paid_until,password,line_id\n"
                         f"bia@example.com,145388,revenda01,2027-01-10,pw-revenda-1,{line_id}\n", encoding="utf-8")
        report = import_json(config, "--csv", str(sheet))
        assert (report["imported"], report["lines"][0]["outcome"]) == (1, "unmatched")
        assert not [a for a, _ in fake.calls if a in WRITES] and fake.credits == 5
        ledger = Ledger(load_config(config).ledger_path)
        assert ledger.one("SELECT line_id, username FROM subscriptions") == {"line_id": str(line_id),
                                                                          "username": "revenda01"}
        assert invoke(config, "subs", "import", "--product", "145388").exit_code == 2  # cannot list: CSV


def test_a_csv_with_a_brazilian_date_a_bad_email_and_monetizze_not_asked(tmp_path, xui):
    """DD/MM/YYYY is how a Brazilian sheet writes dates; an email `subs grant` refuses is refused
    here too; with no MONETIZZE_CONSUMER_KEY the report says Monetizze was not asked."""
    hand_made_lines(xui)
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{xui.url}"\ntimeout_s = 2')
    config = write_install(tmp_path / "nokey", toml, env={"PANEL_MAIN_API_KEY": PANEL_KEY})
    sheet = tmp_path / "planilha.csv"
    sheet.write_text("email,product,username,paid_until\n"
                     "ana@example.com,145388,ana2024,01/03/2027\n"
                     "nao-e-email,145388,maria2024,2027-03-01\n"
                     "joao@example.com,145388,joao2024,2027/03/01\n", encoding="utf-8")
    human = invoke(config, "subs", "import", "--csv", str(sheet), "--dry-run")
    assert human.exit_code == 0 and "note: Monetizze not asked (MONETIZZE_CONSUMER_KEY not set)" in human.stdout
    rows = {r["username"]: r for r in import_json(config, "--csv", str(sheet))["lines"]}
    ana = rows["ana2024"]
    assert (ana["outcome"], ana["action"], ana["paid_until"]) == ("unmatched", "imported", "2027-03-01T03:00:00Z")
    assert ana["reason"].startswith("Monetizze not asked (MONETIZZE_CONSUMER_KEY not set)")
    assert rows["maria2024"]["outcome"] == "not importable"
    assert "'nao-e-email' is not an email address" in rows["maria2024"]["reason"]
    assert rows["joao2024"]["outcome"] == "not importable"
    assert "unreadable: use DD/MM/YYYY or YYYY-MM-DD" in rows["joao2024"]["reason"]
    assert "DD/MM/YYYY" in invoke(config, "subs", "import", "--help").stdout
