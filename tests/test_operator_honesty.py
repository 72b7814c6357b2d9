"""Issue 18, items 7-11: operators' actions that used to do wrong quietly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from freezegun import freeze_time
from support.install import BASE_TOML, write_install
from support.postbacks import deliver, payload
from support.receiver import PATH, install_with, self_signed_certificate
from support.serve import free_port
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.config import load_config
from iptvsync.ledger.db import Ledger

_register()
T0 = "2026-11-20T18:00:00Z"


def invoke(install, *args, env=None):
    return CliRunner().invoke(app, ["--config", str(install), *map(str, args)], env=env, catch_exceptions=False)


# --- 7. simulations of an existing subscription use its real last charge ------------------------

@pytest.fixture
def bought(tmp_path, start):
    """A running receiver and one processed purchase: (config, receiver URL, subscription code)."""
    config = write_install(tmp_path / "i", BASE_TOML)
    url = start(config).url + PATH
    sim = invoke(config, "simulate", "purchase", "--url", url, "--email", "ana@example.com")
    assert sim.exit_code == 0, sim.output
    assert invoke(config, "process").exit_code == 0
    ledger = Ledger(config.parent / "iptvsync.db")
    code = ledger.one("SELECT key FROM subscriptions")["key"].removeprefix("sub:")
    ledger.close()
    return config, url, code


def facts(config: Path) -> dict:
    ledger = Ledger(config.parent / "iptvsync.db")
    try:
        return {"charges": ledger.query("SELECT sale_code, parcela, status FROM charges ORDER BY charge_key"),
                "emails": [r["kind"] for r in ledger.query("SELECT kind FROM outbox ORDER BY id")],
                "paid_until": ledger.one("SELECT paid_until FROM subscriptions")["paid_until"],
                "posted": ledger.query("SELECT sale_code, parcela, event FROM inbox ORDER BY id")}
    finally:
        ledger.close()


def test_simulate_cancel_of_a_subscription_posts_its_last_charge_and_buys_nothing(bought):
    config, url, code = bought
    before = facts(config)
    [charge] = before["charges"]
    assert invoke(config, "simulate", "cancel", "--subscription", code, "--url", url).exit_code == 0
    assert invoke(config, "process").exit_code == 0
    after = facts(config)
    assert after["posted"][-1] == {"sale_code": charge["sale_code"], "parcela": charge["parcela"], "event": 103}
    # no new paid charge, no extra month (the charge itself may now read Completa, as Monetizze says)
    assert [(c["sale_code"], c["parcela"]) for c in after["charges"]] == [(charge["sale_code"], charge["parcela"])]
    assert after["paid_until"] == before["paid_until"]
    assert "renewal" not in after["emails"] and after["emails"][-1] == "cancellation"


@pytest.mark.parametrize("kind", ["refund", "dispute"])
def test_simulate_refund_and_dispute_act_on_the_real_charge(bought, kind):
    config, url, code = bought
    [charge] = facts(config)["charges"]
    result = invoke(config, "simulate", kind, "--subscription", code, "--url", url)
    assert result.exit_code == 0, result.output
    assert invoke(config, "process").exit_code == 0
    after = facts(config)
    assert after["posted"][-1]["sale_code"] == charge["sale_code"]
    assert [c["sale_code"] for c in after["charges"]] == [charge["sale_code"]]
    assert after["charges"][0]["status"] != charge["status"]  # that very charge is refunded / disputed


def test_simulate_renewal_of_a_subscription_is_its_next_parcela(bought):
    config, url, code = bought
    assert invoke(config, "simulate", "renewal", "--subscription", code, "--url", url).exit_code == 0
    assert facts(config)["posted"][-1]["parcela"] == 2


def test_simulate_cancel_without_a_subscription_is_a_usage_error(tmp_path):
    config = write_install(tmp_path / "i", BASE_TOML)
    result = invoke(config, "simulate", "cancel")
    assert result.exit_code == 2
    assert "pass --subscription CODE (its last charge is used" in result.output


# --- 8. serve starts whenever it can store postbacks ----------------------------------------------

def test_serve_starts_and_stores_without_the_panel_key_or_a_good_from(tmp_path, start):
    toml = (BASE_TOML.replace('kind = "dry-run"', 'kind = "xui-admin"\nurl = "http://127.0.0.1:9/x"')
            .replace('from = "IPTV Loja <no-reply@loja.example>"', 'from = "loja"'))
    config = write_install(tmp_path / "i", toml)  # no PANEL_MAIN_API_KEY
    receiver = start(config)
    assert receiver.post(json.dumps(payload(2)).encode(), "application/json").status_code == 200
    for command in ("process", "status", "doctor"):  # where those problems are reported
        result = invoke(config, command)
        assert result.exit_code == 2 and "[email] from must be an address" in result.output, command
    (config.parent / "config.toml").write_text(toml.replace('from = "loja"', 'from = "loja@example.com"'))
    assert receiver.post(json.dumps(payload(2, sale="2")).encode(), "application/json").status_code == 200
    result = invoke(config, "process")
    assert result.exit_code == 2 and "PANEL_MAIN_API_KEY is not set" in result.output


def test_serve_with_process_every_starts_and_says_process_cannot_run(tmp_path, start):
    config = write_install(tmp_path / "i", BASE_TOML.replace('from = "IPTV Loja <no-reply@loja.example>"',
                                                             'from = "loja"'))
    receiver = start(config, "--process-every", "1")
    assert "warning:" in receiver.log() and "[email] from must be an address" in receiver.log()
    assert receiver.get("/healthz").status_code == 200


# --- 9. config not found from another folder --------------------------------------------------

def test_config_not_found_points_to_the_install_before_init(tmp_path, monkeypatch):
    import iptvsync.config as config_module

    elsewhere = write_install(tmp_path / "var" / "lib" / "iptvsync", BASE_TOML)
    monkeypatch.setattr(config_module, "LIKELY_CONFIGS", (elsewhere,))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line == (f"error: {tmp_path}/config.toml: config file not found; there is one at {elsewhere}: pass"
                    f" --config {elsewhere} or set IPTVSYNC_CONFIG (run 'iptvsync init' only for a new install)")
    monkeypatch.setattr(config_module, "LIKELY_CONFIGS", ())
    result = CliRunner().invoke(app, ["status"])
    assert "pass --config PATH or set IPTVSYNC_CONFIG (run 'iptvsync init' only" in result.output
    assert result.output.index("--config") < result.output.index("init")


# --- 10. a broken template names its file and line ----------------------------------------------

def test_a_template_syntax_error_names_the_file_and_line(tmp_path):
    overrides = tmp_path / "templates" / "pt-BR"
    overrides.mkdir(parents=True)
    (overrides / "activation.txt").write_text("Olá {{ buyer_name }}\n\n{% if %}\n", encoding="utf-8")
    toml = BASE_TOML.replace('backend = "maildir"', f'backend = "maildir"\ntemplates_dir = "{overrides.parent}"')
    config = write_install(tmp_path / "i", toml)
    result = invoke(config, "doctor", "--json")
    [row] = [r for r in json.loads(result.stdout) if r["check"] == "email templates"]
    assert row["status"] == "fail"
    assert f"{overrides / 'activation.txt'}, line 3:" in row["detail"]


# --- 11. the smaller ones -----------------------------------------------------------------------

def test_logs_follow_lines_leave_out_what_a_row_lacks():
    from iptvsync.cli.logs import follow_line

    line = follow_line({"at": "2026-11-20T18:00:00Z", "actor": "process", "action": "run.finished",
                        "subscription_id": None, "sale_code": None, "buyer_email": None, "detail": "{}"})
    assert line == "2026-11-20 15:00 -03 process run.finished"
    assert "None" not in line


def test_inbox_show_prints_a_form_a_field_a_line(install, cfg):
    ledger = Ledger(cfg.ledger_path)
    inbox_id = deliver(ledger, payload(2, email="ana\x1b[31m@example.com"))
    ledger.close()
    result = invoke(install, "inbox", "show", inbox_id)
    lines = result.stdout.splitlines()
    assert "  venda[codigo] = 51000001" in lines
    assert any(line.startswith("  json = (the same payload as JSON, ") for line in lines)
    assert "\x1b" not in result.stdout and "  comprador[email] = ana\\x1b[31m@example.com" in lines
    assert max(len(line) for line in lines) < 400


def test_subs_list_says_when_there_are_more(install, cfg):
    for i in range(3):
        assert invoke(install, "subs", "grant", "--email", f"b{i}@example.com", "--product", "145388", "--days", "3",
                      "--key", f"k{i}").exit_code == 0
    cut = invoke(install, "subs", "list", "--limit", "2")
    assert "note: only the newest 2 are shown and there are more" in cut.output
    whole = invoke(install, "subs", "list", "--limit", "3")
    assert "note:" not in whole.output


def test_subs_grant_refuses_what_is_not_an_email(install):
    result = invoke(install, "subs", "grant", "--email", "nao-e-email", "--product", "145388", "--days", "3",
                    "--key", "x")
    assert result.exit_code == 2 and "--email must be the buyer's email address" in result.output


@pytest.mark.parametrize("command", [("logs",), ("inbox", "list")])
def test_an_empty_since_is_an_error_not_everything(install, command):
    result = invoke(install, *command, "--since", "")
    assert result.exit_code == 2 and "--since is empty" in result.output


def test_inbox_prune_prints_sao_paulo_time(install, cfg):
    with freeze_time(T0):
        result = invoke(install, "inbox", "prune", "--older-than", "400d")
    assert "received before 2025-10-16 15:00 -03 dropped" in result.output and "UTC" not in result.output


def test_certfile_without_keyfile_says_the_key_is_missing(tmp_path):
    cert, _key = self_signed_certificate(tmp_path)
    config = install_with(tmp_path)
    result = invoke(config, "serve", "--certfile", cert, "--port", free_port())
    assert result.exit_code == 2
    assert f"--certfile: {cert} holds no private key and --keyfile is not set" in result.output
    assert "PEM" not in result.output


def test_doctor_does_not_say_login_ok_when_no_login_was_tried(tmp_path):
    from support.smtp import smtp_server

    with smtp_server(tls="none") as server:
        config = write_install(tmp_path / "i", BASE_TOML.replace(
            'backend = "maildir"', f'backend = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {server.port}\n'
                                   'smtp_security = "none"'))
        from iptvsync.ops.doctor import check_email

        [row] = [r for r in check_email(load_config(config)) if r["check"] == "email backend"]
    assert row["status"] == "warn" and "no login tried (SMTP_USERNAME is not set)" in row["detail"]
    assert "login ok" not in row["detail"]
