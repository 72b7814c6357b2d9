"""Hostile input on loopback against the console and the CLI's printing: cursors and ids out
of SQLite's range (400/404, never 500), stored postbacks with a lone surrogate (U+FFFD in
every value read), control characters in what the CLI prints for people, and the throttled
login's ``Retry-After``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from freezegun import freeze_time
from support.admin import PASSWORD, add_operator, login
from support.postbacks import payload
from typer.testing import CliRunner

from iptvsync.admin import create_app
from iptvsync.cli import _register
from iptvsync.cli import app as cli_app
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.inbox import inbox_row, store
from iptvsync.monetizze.postback import parse

_register()

JSON = "application/json"
HUGE = "999999999999999999999999"


@pytest.fixture
def client(cfg):
    add_operator(cfg, "maria", "owner")
    web = create_app(cfg).test_client()
    assert login(web, "maria").status_code == 303
    return web


def put_json(cfg, p: dict) -> int:
    """A JSON postback stored as the receiver stores it: the body as posted (``json.dumps``
    escapes a lone surrogate as ``\\ud800``, as Monetizze's JSON may), the columns parsed."""
    body = json.dumps(p).encode()
    _, pb = parse(body, JSON)
    ledger = Ledger(cfg.ledger_path)
    try:
        inbox_id, _dup = store(ledger, inbox_row(pb, body, content_type=JSON, remote_addr="127.0.0.1",
                                                 at=datetime(2026, 11, 20, 12, tzinfo=UTC)))
    finally:
        ledger.close()
    return inbox_id


def odd_payload(sale: str = "51000001", code: str | None = None, name: str = "Ana", email: str = "ana@example.com"):
    p = payload(sale=sale)
    p["venda"]["codigo"] = code if code is not None else sale
    p["comprador"].update(nome=name, email=email)
    p["\ud800key"] = "x"
    return p


# --- item 3: numbers out of SQLite's range ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/assinaturas", "/postbacks", "/registro"])
@pytest.mark.parametrize("before", [HUGE, "-" + HUGE, "9223372036854775808", "0", "x"])
def test_a_cursor_out_of_range_is_ignored_never_a_500(client, path, before):
    response = client.get(path, query_string={"before": before})
    assert response.status_code == 200, (path, before, response.status_code)


@pytest.mark.parametrize("path", [f"/postbacks/{HUGE}", f"/assinaturas/{HUGE}", "/assinaturas/9223372036854775808"])
def test_a_row_id_out_of_range_is_a_404_never_a_500(client, path):
    assert client.get(path).status_code == 404


# --- item 4: lone surrogates read from stored postbacks -----------------------------------------------------

def test_a_postback_with_lone_surrogates_shows_in_the_console_and_the_cli(client, cfg, install):
    inbox_id = put_json(cfg, odd_payload(code="\ud800", name="An\udfffa", email="a\ud800@example.com"))
    page = client.get(f"/postbacks/{inbox_id}")
    assert page.status_code == 200
    assert "\ufffd" in page.get_data(as_text=True)
    assert client.get("/postbacks").status_code == 200
    runner = CliRunner()
    for extra in (["--json"], []):
        result = runner.invoke(cli_app, ["--config", str(install), "inbox", "show", str(inbox_id), *extra])
        assert result.exit_code == 0, result.output
        assert "\ufffd" in result.output
    shown = json.loads(runner.invoke(cli_app, ["--config", str(install), "inbox", "show", str(inbox_id),
                                              "--json"]).output)
    assert shown["body"]["venda"]["codigo"] == "\ufffd" and shown["body"]["comprador"]["nome"] == "An\ufffda"
    assert "\ufffdkey" in shown["body"]  # keys too
    listed = runner.invoke(cli_app, ["--config", str(install), "inbox", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)


# --- item 5: control characters never reach the terminal ----------------------------------------------------

def test_control_characters_in_a_sale_code_are_printed_as_escapes(cfg, install):
    hostile = "\x1b]0;pwned\x07\x1b[2J\x00SALE"
    inbox_id = put_json(cfg, odd_payload(sale="51000009", code=hostile))
    runner = CliRunner()
    for args in (["inbox", "show", str(inbox_id)], ["inbox", "list"], ["inbox", "list", "--wide"]):
        result = runner.invoke(cli_app, ["--config", str(install), *args], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert not any(c in result.output for c in "\x1b\x07\x00"), (args, result.output)
    shown = runner.invoke(cli_app, ["--config", str(install), "inbox", "show", str(inbox_id)]).output
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x00SALE" in shown
    as_json = runner.invoke(cli_app, ["--config", str(install), "inbox", "show", str(inbox_id), "--json"]).output
    assert json.loads(as_json)["sale_code"] == hostile  # JSON stays JSON: the value as stored


# --- item 6: Retry-After ----------------------------------------------------------------------------------------

def test_a_throttled_login_says_when_to_retry(cfg):
    add_operator(cfg, "maria", "owner")
    web = create_app(cfg).test_client()
    with freeze_time("2026-12-01T12:00:00Z"):
        for _ in range(3):
            assert login(web, "maria", "wrong password").status_code == 401
        refused = login(web, "maria", PASSWORD)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit() and int(refused.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("args", [["inbox", "show", HUGE], ["subs", "show", HUGE], ["inbox", "list", "--limit", HUGE]])
def test_a_cli_number_out_of_range_is_a_one_line_usage_error(install, args):
    result = CliRunner().invoke(cli_app, ["--config", str(install), *args])
    assert result.exit_code == 2 and "out of range" in result.output, result.output
    assert "Traceback" not in result.output and "OverflowError" not in result.output
