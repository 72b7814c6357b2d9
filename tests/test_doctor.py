"""``iptvsync doctor`` finds what would stop an install from working."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from support.install import BASE_TOML, write_install
from support.smtp import _self_signed, smtp_server
from support.xui import FakeXuiAdmin, FakeXuiReseller
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.clock import SAO_PAULO

_register()


def doctor(config) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["--config", str(config), "doctor", "--json"], catch_exceptions=False)
    return result.exit_code, {r["check"]: r for r in json.loads(result.stdout)}


def test_fresh_install_is_ok_with_warnings(install):
    from iptvsync.config import load_config
    from iptvsync.ledger.db import Ledger

    Ledger(load_config(install).ledger_path).close()
    code, rows = doctor(install)
    assert code == 0
    assert rows["panel main"]["status"] == "warn" and "dry-run" in rows["panel main"]["detail"]
    assert rows["email templates"]["status"] == "ok"
    assert rows["audit chain"]["status"] == "ok"


def test_missing_ledger_and_secret_fail(tmp_path):
    config = write_install(tmp_path / "i", ledger=False)
    (tmp_path / "i" / ".env").write_text("")
    code, rows = doctor(config)
    assert code == 1
    assert rows["ledger"]["status"] == "fail" and "iptvsync init" in rows["ledger"]["detail"]
    assert rows["MONETIZZE_CHAVE_UNICA"]["status"] == "fail"


def test_a_ledger_path_typo_is_not_told_to_run_init(tmp_path):
    """status's hint (``LedgerMissing``): following a bare "run init" makes an empty ledger at the typo."""
    config = write_install(tmp_path / "i")  # the ledger is iptvsync.db; the config then names a typo
    config.write_text(BASE_TOML.replace('path = "iptvsync.db"', 'path = "iptvsycn.db"'), encoding="utf-8")
    code, rows = doctor(config)
    detail = rows["ledger"]["detail"]
    assert code == 1 and rows["ledger"]["status"] == "fail"
    assert "iptvsycn.db: no ledger there: check [ledger] path in the config, or create one with" in detail
    assert not (tmp_path / "i" / "iptvsycn.db").exists()


def test_panel_key_credits_timezone_outputs_packages_and_cache(tmp_path):
    with FakeXuiAdmin(api_key="right-key-123456", timezone=None, enable_cache=True) as admin, \
            FakeXuiReseller(api_key="k", credits=0) as reseller:
        toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{admin.url}"') + (
            f'\n[panels.res]\nkind = "xui-reseller"\nurl = "{reseller.url}"\n')
        config = write_install(tmp_path / "i", toml, env={"PANEL_MAIN_API_KEY": "right-key-123456",
                                                          "PANEL_RES_API_KEY": "k"})
        code, rows = doctor(config)
        # a non-UTC API user is no problem any more (expiries go as @unix): reported, not warned
        main = rows["panel main"]
        assert main["status"] == "ok" and "timezone=Europe/London (panel default)" in main["detail"]
        assert "outputs=m3u8, ts, rtmp" in main["detail"] and "line_cache=on" in main["detail"]
        assert rows["panel res"]["status"] == "warn" and "credits" in rows["panel res"]["detail"]
        assert "packages=7: 1 months, 1 cr, outputs m3u8,ts" in rows["panel res"]["detail"]
        config = write_install(tmp_path / "j", toml, env={"PANEL_MAIN_API_KEY": "wrong-key-654321",
                                                          "PANEL_RES_API_KEY": "k"})
        code, rows = doctor(config)
        assert code == 1 and rows["panel main"]["status"] == "fail"
        assert "wrong-key-654321" not in json.dumps(rows)


def test_smtp_login_checked(tmp_path):
    with smtp_server(tls="starttls", auth=("loja", "good-password")) as server:
        toml = BASE_TOML.replace('backend = "maildir"', 'backend = "smtp"') + (
            f'smtp_host = "127.0.0.1"\nsmtp_port = {server.port}\nsmtp_cafile = "{_self_signed()[0]}"\n')
        ok = write_install(tmp_path / "i", toml, env={"SMTP_USERNAME": "loja", "SMTP_PASSWORD": "good-password"})
        assert doctor(ok)[1]["email backend"]["status"] == "ok"
        bad = write_install(tmp_path / "j", toml, env={"SMTP_USERNAME": "loja", "SMTP_PASSWORD": "bad-password"})
        code, rows = doctor(bad)
        assert code == 1 and rows["email backend"]["status"] == "fail"
        assert "bad-password" not in json.dumps(rows)


def test_expired_tls_certificate_fails(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    past = datetime.now(UTC) - timedelta(days=30)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(past - timedelta(days=1)).not_valid_after(past)
            .sign(key, hashes.SHA256()))
    d = tmp_path / "i"
    d.mkdir()
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    config = write_install(d, BASE_TOML.replace('path = "/monetizze/postback/s3cr3tpath"',
                                                'path = "/monetizze/postback/s3cr3tpath"\ncertfile = "cert.pem"'))
    code, rows = doctor(config)
    assert code == 1 and rows["receiver TLS"]["status"] == "fail" and "expired" in rows["receiver TLS"]["detail"]


def test_monetizze_consumer_key_is_tried(tmp_path):
    from support.monetizze import FakeMonetizze

    with FakeMonetizze() as api:
        toml = BASE_TOML + f'\n[monetizze]\napi_url = "{api.url}"\n'
        good = write_install(tmp_path / "i", toml, env={"MONETIZZE_CONSUMER_KEY": api.consumer_key})
        assert doctor(good)[1]["MONETIZZE_CONSUMER_KEY"]["status"] == "ok"
        bad = write_install(tmp_path / "j", toml, env={"MONETIZZE_CONSUMER_KEY": "not-the-key-0000"})
        code, rows = doctor(bad)
        assert code == 1 and rows["MONETIZZE_CONSUMER_KEY"]["status"] == "fail"
        assert "not-the-key-0000" not in json.dumps(rows)


def test_doctor_logs_in_with_a_synced_line_like_the_buyers_app(tmp_path):
    from support.postbacks import deliver, payload

    from iptvsync.config import load_config
    from iptvsync.engine.runner import run_process
    from iptvsync.ledger.db import Ledger

    with FakeXuiAdmin(api_key="k") as admin:
        toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-admin"\nurl = "{admin.url}"').replace(
            'server = "http://tv.example.com:8080"', f'server = "{admin.root}"')
        config = write_install(tmp_path / "i", toml, env={"PANEL_MAIN_API_KEY": "k"})
        cfg = load_config(config)
        ledger = Ledger(cfg.ledger_path)
        assert doctor(config)[1]["panel main player"]["detail"].startswith("no enabled line synced yet")
        paid = datetime.now(UTC).astimezone(SAO_PAULO).strftime("%Y-%m-%d %H:%M:%S")
        deliver(ledger, payload(2, paid=paid))
        run_process(cfg)
        row = doctor(config)[1]["panel main player"]
        assert row["status"] == "ok" and "plays: Active, outputs m3u8, ts, rtmp" in row["detail"]
        [line] = admin.lines.values()
        line["allowed_outputs"] = []  # what a create without access_output[] leaves (XC_VM)
        row = doctor(config)[1]["panel main player"]
        assert row["status"] == "warn" and "no allowed output format" in row["detail"]
        line["enabled"] = 0
        assert "HTTP 404" in doctor(config)[1]["panel main player"]["detail"]


def test_a_reseller_that_may_not_choose_usernames_fails_with_the_fix(tmp_path):
    """Its lines cannot be found after a lost create reply (the reseller get_lines is empty
    through the API): doctor says so, with the fix in one line."""
    with FakeXuiReseller(api_key="k", credits=5, allow_change_username=False) as reseller:
        toml = BASE_TOML.replace('kind = "dry-run"', f'kind = "xui-reseller"\nurl = "{reseller.url}"').replace(
            "bouquets = [1, 2, 3]", "package = 7")
        code, rows = doctor(write_install(tmp_path / "i", toml, env={"PANEL_MAIN_API_KEY": "k"}))
        assert code == 1 and rows["panel main"]["status"] == "fail"
        assert 'tick "Change Usernames"' in rows["panel main"]["detail"]


def test_doctor_keeps_each_panels_verdict_and_credits_for_the_painel(tmp_path):
    """``doctor`` warns at or below ``[panels.X] low_credits`` and leaves its verdict and the
    credits in ``panel_state``, which the console's Painel reads instead of calling the panel."""
    from iptvsync.config import load_config
    from iptvsync.ledger.db import Ledger

    with FakeXuiReseller(api_key="k", credits=7) as reseller:
        toml = BASE_TOML + f'\n[panels.res]\nkind = "xui-reseller"\nurl = "{reseller.url}"\nlow_credits = 7\n'
        config = write_install(tmp_path / "i", toml, env={"PANEL_RES_API_KEY": "k"})
        code, rows = doctor(config)
    assert rows["panel res"]["status"] == "warn" and "low credits (low_credits = 7)" in rows["panel res"]["detail"]
    ledger = Ledger(load_config(config).ledger_path)
    try:
        state = {r["panel"]: r for r in ledger.query("SELECT * FROM panel_state")}
    finally:
        ledger.close()
    assert state["res"]["credits"] == 7 and state["res"]["status"] == "warn"
    assert state["main"]["status"] == "warn" and state["main"]["credits"] is None
