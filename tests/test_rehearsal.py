"""The go-live rehearsal against a real panel family (fake XUI admin on loopback) and a real SMTP
server: `simulate purchase --live` goes through receiver, panel and email, then disables the
test line; plain `simulate` on a real panel warns before creating a real line."""

from __future__ import annotations

import re
import subprocess

from support.install import BASE_TOML, write_install
from support.ops import IPTVSYNC
from support.serve import serving
from support.smtp import _self_signed, smtp_server
from support.xui import FakeXuiAdmin

from iptvsync.ledger.db import Ledger

PATH = "/monetizze/postback/s3cr3tpath"


def live_install(tmp_path, panel_url: str, smtp_port: int):
    toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{panel_url}"\ntimeout_s = 5')
    toml = toml.replace('backend = "maildir"', 'backend = "smtp"') + (
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\nsmtp_security = "starttls"\n'
        f'smtp_cafile = "{_self_signed()[0]}"\ntimeout_s = 5\n')
    return write_install(tmp_path / "install", toml, env={"PANEL_MAIN_API_KEY": "k", "SMTP_USERNAME": "loja",
                                                          "SMTP_PASSWORD": "s3nha-smtp"})


def simulate(config, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IPTVSYNC, "--config", str(config), "simulate", "purchase", "--url", url + PATH, *args],
                          capture_output=True, text=True, timeout=120, cwd=config.parent, stdin=subprocess.DEVNULL)


def test_live_rehearsal_goes_through_the_chain_then_disables_the_test_line(tmp_path):
    with FakeXuiAdmin() as panel, smtp_server(tls="starttls", auth=("loja", "s3nha-smtp")) as smtp:
        config = live_install(tmp_path, panel.url, smtp.port)
        with serving(config) as (url, _):
            result = simulate(config, url, "--live", "--email", "dono@loja.example", "--wait", "60")
        assert result.returncode == 0, result.stdout + result.stderr
        said = result.stdout
        assert "HTTP 200" in said and "created on panel main (xui-admin)" in said
        # for people, São Paulo time with its offset, never the ledger's UTC text (issue 18)
        assert re.search(r"enabled until \d{4}-\d\d-\d\d \d\d:\d\d -0[23]\n", said), said
        assert "Z\n" not in said
        assert "activation email sent to dono@loja.example" in said
        assert "disabled on the panel" in said and "never deletes lines" in said
        [line] = panel.lines.values()
        assert line["enabled"] == 0 and line["admin_enabled"] == 1  # disabled, not banned, not deleted
        assert "delete_line" not in [action for action, _ in panel.calls]
        [mail] = smtp.received
        assert mail.rcpt_tos == ["dono@loja.example"] and line["username"] in mail.message().get_body(
            ("plain",)).get_content()
    ledger = Ledger(config.parent / "iptvsync.db")
    sub = ledger.one("SELECT * FROM subscriptions")
    actions = [r["action"] for r in ledger.query("SELECT action FROM audit ORDER BY id")]
    ledger.close()
    assert sub["buyer_name"] == "Ensaio iptvsync (teste)" and sub["hold"] == "suspended"
    assert "rehearsal.finished" in actions


def test_live_rehearsal_needs_the_operators_address(tmp_path):
    config = write_install(tmp_path / "install")
    result = simulate(config, "http://127.0.0.1:9", "--live")
    assert result.returncode == 2 and "--email" in result.stderr


def test_plain_simulate_on_a_real_panel_warns_and_needs_confirmation(tmp_path):
    with FakeXuiAdmin() as panel, smtp_server() as smtp:
        config = live_install(tmp_path, panel.url, smtp.port)
        with serving(config) as (url, _):
            refused = simulate(config, url)
            assert refused.returncode == 1
            assert "REAL line" in refused.stderr and "--live" in refused.stderr and "HTTP" not in refused.stdout
            accepted = simulate(config, url, "--yes")
            assert accepted.returncode == 0 and "HTTP 200" in accepted.stdout
    ledger = Ledger(config.parent / "iptvsync.db")
    assert ledger.one("SELECT COUNT(*) AS n FROM inbox")["n"] == 1  # only the confirmed one was posted
    ledger.close()


def test_plain_simulate_on_the_dry_run_panel_does_not_ask(tmp_path):
    config = write_install(tmp_path / "install")
    with serving(config) as (url, _):
        result = simulate(config, url)
    assert result.returncode == 0 and "warning" not in result.stderr


def test_a_rehearsal_that_cannot_finish_says_why(tmp_path):
    with FakeXuiAdmin() as panel, smtp_server(tls="starttls", auth=("loja", "s3nha-smtp")) as smtp:
        panel.down = True  # HTTP 503: a transient panel failure, retried with backoff
        config = live_install(tmp_path, panel.url, smtp.port)
        with serving(config) as (url, _):
            result = simulate(config, url, "--live", "--email", "dono@loja.example", "--wait", "2")
    assert result.returncode == 1 and "HTTP 200" in result.stdout
    # the process run's own warning (the panel's answer), then one error line
    error = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert error.startswith("error: rehearsal: no line and activation email after 2s (panel: ")
    assert "iptvsync logs --sale SIM" in error and smtp.received == []
