"""Config: the shipped example, precedence, one-line errors naming key and file, paths, secrets."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from email.utils import parseaddr
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.install import BASE_TOML, CHAVE, SECRET_KEY, write_install
from typer.testing import CliRunner

from iptvsync.cli import _register, app
from iptvsync.config import _PLAIN_FROM, SCHEMA, PlanOverride, PolicySection, ProductConfig, has_address, load_config
from iptvsync.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

# The smallest valid file: one dry-run panel and one product; everything else defaults.
MINIMAL = """
[panels.main]
kind = "dry-run"

[products.145388]
panel = "main"
days = 30
"""


def config_error(tmp_path: Path, toml: str, env: dict | None = None) -> tuple[str, Path]:
    config = write_install(tmp_path, toml, env)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    return str(info.value), config


def assert_one_line(message: str, *fragments: str) -> None:
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- the shipped example ---------------------------------------------------------------------------

def test_top_level_example_is_the_packaged_one_byte_for_byte():
    packaged = resources.files("iptvsync").joinpath("data/config.example.toml").read_bytes()
    assert (ROOT / "config.example.toml").read_bytes() == packaged


def test_shipped_example_loads_with_a_dotenv(tmp_path):
    config = write_install(tmp_path, (ROOT / "config.example.toml").read_text("utf-8"))
    cfg = load_config(config)
    assert cfg.receiver.port == 8080
    assert cfg.receiver.path == "/monetizze/postback"
    assert cfg.panels["main"].kind == "dry-run"
    product = cfg.products["145388"]
    assert (product.panel, product.days, product.bouquets, product.package) == ("main", 30, (1, 2, 3), None)
    assert cfg.policy.reminder_days == (3,)
    assert cfg.email.smtp_security == "starttls"
    assert cfg.ledger_path == tmp_path / "iptvsync.db"
    assert cfg.secrets.chave_unica == CHAVE
    assert cfg.secrets.secret_key == SECRET_KEY


def test_shipped_example_documents_every_section_key():
    example = tomllib.loads((ROOT / "config.example.toml").read_text("utf-8"))
    for section, keys in SCHEMA.items():
        assert set(example[section]) == set(keys), section


def test_env_example_lists_every_secret_the_config_reads(tmp_path):
    text = (ROOT / ".env.example").read_text("utf-8")
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    assert names == {"MONETIZZE_CHAVE_UNICA", "MONETIZZE_CONSUMER_KEY", "IPTVSYNC_SECRET_KEY",
                     "PANEL_MAIN_API_KEY", "SMTP_USERNAME", "SMTP_PASSWORD", "WHATSAPP_TOKEN",
                     "WHATSAPP_CLIENT_TOKEN"}
    config = write_install(tmp_path, (ROOT / "config.example.toml").read_text("utf-8"))
    (tmp_path / ".env").write_text(text.replace("SMTP_USERNAME=", "SMTP_USERNAME=shop"), "utf-8")
    cfg = load_config(config)
    assert cfg.secrets.smtp_username == "shop"
    assert cfg.secrets.chave_unica == ""


# --- precedence ---------------------------------------------------------------------------------------

def test_scalar_precedence_cli_then_env_then_dotenv_then_file_then_default(tmp_path, monkeypatch):
    config = write_install(tmp_path, MINIMAL)
    assert load_config(config).receiver.port == 8080  # default

    write_install(tmp_path, MINIMAL + "\n[receiver]\nport = 1001\n")
    assert load_config(config).receiver.port == 1001  # file beats default

    write_install(tmp_path, MINIMAL + "\n[receiver]\nport = 1001\n", {"IPTVSYNC_RECEIVER_PORT": "1002"})
    assert load_config(config).receiver.port == 1002  # .env beats file

    monkeypatch.setenv("IPTVSYNC_RECEIVER_PORT", "1003")
    assert load_config(config).receiver.port == 1003  # environment beats .env

    assert load_config(config, overrides={"receiver.port": 1004}).receiver.port == 1004  # CLI beats all
    assert load_config(config, overrides={"receiver.port": None}).receiver.port == 1003  # option not given


def test_environment_values_are_typed_like_the_file_key(tmp_path, monkeypatch):
    config = write_install(tmp_path, MINIMAL)
    monkeypatch.setenv("IPTVSYNC_POLICY_REMINDER_DAYS", "7, 1")
    monkeypatch.setenv("IPTVSYNC_MONETIZZE_CHECK_PRODUCT_KEY", "yes")
    monkeypatch.setenv("IPTVSYNC_EMAIL_FROM", "Loja <loja@example.com>")
    cfg = load_config(config)
    assert cfg.policy.reminder_days == (7, 1)
    assert cfg.monetizze.check_product_key is True
    assert cfg.email.from_addr == "Loja <loja@example.com>"
    monkeypatch.setenv("IPTVSYNC_POLICY_REMINDER_DAYS", "")
    assert load_config(config).policy.reminder_days == ()


def test_secrets_environment_beats_dotenv(tmp_path, monkeypatch):
    config = write_install(tmp_path, MINIMAL, {"SMTP_PASSWORD": "from-dotenv", "PANEL_MAIN_API_KEY": "k-dotenv"})
    cfg = load_config(config)
    assert (cfg.secrets.chave_unica, cfg.secrets.smtp_password) == (CHAVE, "from-dotenv")
    assert cfg.secrets.panel_api_keys == {"main": "k-dotenv"}

    monkeypatch.setenv("MONETIZZE_CHAVE_UNICA", "from-env")
    monkeypatch.setenv("PANEL_MAIN_API_KEY", "k-env")
    cfg = load_config(config)
    assert cfg.secrets.chave_unica == "from-env"
    assert cfg.secrets.panel_api_keys == {"main": "k-env"}
    assert cfg.secrets.smtp_password == "from-dotenv"  # not overridden: still from .env


def test_config_path_from_environment(tmp_path, monkeypatch):
    config = write_install(tmp_path / "elsewhere", BASE_TOML)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IPTVSYNC_CONFIG", str(config))
    assert load_config().path == config


def test_secrets_in_the_file_are_refused(tmp_path):
    message, config = config_error(tmp_path, MINIMAL + '\n[monetizze]\nchave_unica = "abc"\n')
    assert_one_line(message, "chave_unica", "[monetizze]", str(config))
    assert "abc" not in message


# --- every bad input is one line naming the key and the file ----------------------------------------

UNKNOWN_KEYS = {
    "ledger": "\n[ledger]\nbogus_key = 1\n",
    "receiver": "\n[receiver]\nbogus_key = 1\n",
    "monetizze": "\n[monetizze]\nbogus_key = 1\n",
    "policy": "\n[policy]\nbogus_key = 1\n",
    "email": "\n[email]\nbogus_key = 1\n",
}


@pytest.mark.parametrize("section", sorted(UNKNOWN_KEYS))
def test_unknown_key_in_each_section(tmp_path, section):
    message, config = config_error(tmp_path, MINIMAL + UNKNOWN_KEYS[section])
    assert_one_line(message, "bogus_key", f"[{section}]", str(config))


@pytest.mark.parametrize(("toml", "where"), [
    ('[panels.main]\nkind = "dry-run"\nbogus_key = 1\n[products.145388]\npanel = "main"\ndays = 30\n', "panels.main"),
    ('[panels.main]\nkind = "dry-run"\n[panels.main.links]\nbogus_key = 1\n'
     '[products.145388]\npanel = "main"\ndays = 30\n',
     "panels.main.links"),
    ('[panels.main]\nkind = "dry-run"\n'
     '[products.145388]\npanel = "main"\ndays = 30\nbogus_key = 1\n', "products.145388"),
    ('[panels.main]\nkind = "dry-run"\n[products.145388]\npanel = "main"\ndays = 30\n[products.145388.plans.FN1]\n'
     'bogus_key = 1\n', "products.145388.plans.FN1"),
])
def test_unknown_key_in_panels_products_and_plans(tmp_path, toml, where):
    message, config = config_error(tmp_path, toml)
    assert_one_line(message, "bogus_key", where, str(config))


def test_unknown_section(tmp_path):
    message, config = config_error(tmp_path, MINIMAL + "\n[recevier]\nport = 1\n")
    assert_one_line(message, "recevier", str(config))


def test_a_key_with_a_newline_in_its_name_still_gives_one_line(tmp_path):
    message, config = config_error(tmp_path, MINIMAL + '\n[receiver]\n"po\\nrt" = 1\n')
    assert_one_line(message, "[receiver]", str(config))


@pytest.mark.parametrize(("extra", "key"), [
    ('\n[receiver]\nport = "8080"\n', "[receiver] port"),
    ("\n[receiver]\nport = true\n", "[receiver] port"),
    ("\n[receiver]\nport = 80.5\n", "[receiver] port"),
    ("\n[ledger]\npath = 5\n", "[ledger] path"),
    ('\n[monetizze]\ncheck_product_key = "yes"\n', "[monetizze] check_product_key"),
    ("\n[monetizze]\ncheck_product_key = 1\n", "[monetizze] check_product_key"),
    ("\n[policy]\nreminder_days = 3\n", "[policy] reminder_days"),
    ('\n[policy]\nreminder_days = ["3"]\n', "[policy] reminder_days"),
    ("\n[policy]\nreminder_days = [true]\n", "[policy] reminder_days"),
    ("\n[receiver]\nallowed_ips = [10]\n", "[receiver] allowed_ips"),
    ("\n[receiver]\ntrusted_proxies = \"127.0.0.1/32\"\n", "[receiver] trusted_proxies"),
    ("\n[email]\nsmtp_port = \"587\"\n", "[email] smtp_port"),
    ("\nreceiver = 3\n", "receiver"),
])
def test_wrong_type(tmp_path, extra, key):
    # top-level keys must come before any table in TOML
    toml = extra + MINIMAL if extra.startswith("\nreceiver") else MINIMAL + extra
    message, config = config_error(tmp_path, toml)
    assert_one_line(message, key, str(config))


@pytest.mark.parametrize(("toml", "key"), [
    ('[panels.main]\nkind = "dry-run"\nmax_concurrency = "4"\n'
     '[products.1]\npanel = "main"\ndays = 30\n', "max_concurrency"),
    ('[panels.main]\nkind = "dry-run"\n[products.1]\npanel = "main"\ndays = 30\nbouquets = [1, "2"]\n', "bouquets"),
    ('[panels.main]\nkind = "dry-run"\n[products.1]\npanel = "main"\ndays = "30"\n', "days"),
    ('[panels.main]\nkind = "dry-run"\n'
     '[products.1]\npanel = "main"\ndays = 30\n[products.1.plans.P]\ndays = "9"\n', "days"),
    ('[panels.main]\nkind = "dry-run"\n[products.1]\npanel = "main"\ndays = 30\nplans = 3\n', "plans"),
    ('[panels.main]\nkind = "dry-run"\n'
     '[products.1]\npanel = "main"\ndays = 30\nplans = {P = 3}\n', "products.1.plans.P"),
    ('[panels.main]\nkind = "dry-run"\nlinks = 3\n[products.1]\npanel = "main"\ndays = 30\n', "links"),
    ('[panels]\nmain = 3\n', "panels.main"),
    ('[products]\n1 = 3\n[panels.main]\nkind = "dry-run"\n', "products.1"),
    ('panels = 3\n', "panels"),
    ('products = 3\n', "products"),
])
def test_wrong_type_in_panels_and_products(tmp_path, toml, key):
    message, config = config_error(tmp_path, toml)
    assert_one_line(message, key, str(config))


@pytest.mark.parametrize(("extra", "key", "value"), [
    ('\n[policy]\non_subscription_cancelled = "later"\n', "on_subscription_cancelled", "later"),
    ('\n[policy]\non_dispute = "refund"\n', "on_dispute", "refund"),
    ('\n[email]\nbackend = "sendmail"\n', "backend", "sendmail"),
    ('\n[email]\nsmtp_security = "ssl"\n', "smtp_security", "ssl"),
])
def test_bad_choice(tmp_path, extra, key, value):
    message, config = config_error(tmp_path, MINIMAL + extra)
    assert_one_line(message, key, value, str(config))


def test_period_in_months_and_outputs(tmp_path):
    from iptvsync.config import load_config

    toml = ('[panels.main]\nkind = "dry-run"\noutputs = ["m3u8"]\n[products.1]\npanel = "main"\n'
            'period = "1 month"\noutputs = ["ts", "m3u8"]\n[products.1.plans.Q]\nperiod = "3 months"\n'
            '[products.2]\npanel = "main"\nperiod = "45 days"\n')
    cfg = load_config(write_install(tmp_path / "i", toml))
    one, two = cfg.products["1"], cfg.products["2"]
    assert (one.days, one.months, one.outputs, one.plans["Q"].months) == (None, 1, ("ts", "m3u8"), 3)
    assert (two.days, two.months, cfg.panels["main"].outputs) == (45, None, ("m3u8",))


def test_bad_panel_kind(tmp_path):
    message, config = config_error(tmp_path, '[panels.main]\nkind = "stalker"\n'
     '[products.1]\npanel = "main"\ndays = 30\n')
    assert_one_line(message, "kind", "panels.main", "stalker", "xui-admin", str(config))


@pytest.mark.parametrize(("toml", "fragments"), [
    ('[panels.main]\nkind = "dry-run"\n[products.145388]\npanel = "nope"\n', ("products.145388", "panel", "nope")),
    ('[panels.main]\nkind = "dry-run"\n[products.145388]\ndays = 30\n', ("products.145388", "panel")),
    ('[panels.main]\nurl = "http://x"\n[products.145388]\npanel = "main"\ndays = 30\n', ("panels.main", "kind")),
    ('[panels.main]\nkind = "xui-reseller"\nurl = "http://panel.example/abc"\n'
     '[products.145388]\npanel = "main"\ndays = 30\n', ("products.145388", "package")),
    ('[panels.main]\nkind = "xui-admin"\n[products.145388]\npanel = "main"\ndays = 30\n', ("panels.main", "url")),
    ('[panels.main]\nkind = "xtream-codes"\nurl = ""\n'
     '[products.145388]\npanel = "main"\ndays = 30\n', ("panels.main", "url")),
    ('[panels.main]\nkind = "dry-run"\nmax_concurrency = 0\n[products.1]\npanel = "main"\ndays = 30\n',
     ("panels.main", "max_concurrency")),
    (MINIMAL + '\n[receiver]\npath = "monetizze"\n', ("[receiver] path",)),
    (MINIMAL + "\n[policy]\ngrace_days = -1\n", ("grace_days",)),
    (MINIMAL + "\n[policy]\nreminder_days = [3, -1]\n", ("reminder_days",)),
    # a period or an output format the families do not know
    ('[panels.main]\nkind = "dry-run"\n[products.1]\npanel = "main"\nperiod = "1 fortnight"\n',
     ("products.1", "period", "1 fortnight")),
    ('[panels.main]\nkind = "dry-run"\n[products.1]\npanel = "main"\ndays = 30\nperiod = "1 month"\n',
     ("products.1", "days", "period")),
    ('[panels.main]\nkind = "dry-run"\noutputs = ["hls"]\n[products.1]\npanel = "main"\ndays = 30\n',
     ("panels.main", "outputs", "hls")),
    ('[panels.main]\nkind = "dry-run"\n[products.1]\npanel = "main"\ndays = 30\noutputs = ["ts", "flv"]\n',
     ("products.1", "outputs", "flv")),
])
def test_inconsistent_settings(tmp_path, toml, fragments):
    message, config = config_error(tmp_path, toml)
    assert_one_line(message, *fragments, str(config))


def test_reseller_product_with_package_and_dry_run_panel_without_url_load(tmp_path):
    toml = ('[panels.res]\nkind = "xui-reseller"\nurl = "http://panel.example/abc"\n'
            '[panels.test]\nkind = "dry-run"\n'
            '[products.1]\npanel = "res"\npackage = 7\ndays = 30\n[products.2]\npanel = "test"\ndays = 30\n')
    cfg = load_config(write_install(tmp_path, toml, {"PANEL_RES_API_KEY": "k"}))
    assert cfg.products["1"].package == 7
    assert cfg.panels["test"].url == ""


def test_missing_file(tmp_path):
    missing = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert_one_line(str(info.value), str(missing), "init")


@pytest.mark.parametrize("text", ['[receiver\nport = 1\n', 'port = \n', '[a]\nx = 1\n[a]\nx = 2\n',
                                  '[email]\nfrom = "unterminated\n'])
def test_invalid_toml(tmp_path, text):
    message, config = config_error(tmp_path, text)
    assert_one_line(message, str(config), "TOML")


def test_invalid_utf8(tmp_path):
    config = write_install(tmp_path, MINIMAL)
    config.write_bytes(b'[email]\nfrom = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert_one_line(str(info.value), str(config))


def test_config_path_that_is_a_directory(tmp_path):
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.toml")
    assert_one_line(str(info.value), str(tmp_path / "config.toml"))


def test_bad_environment_value_names_the_variable(tmp_path, monkeypatch):
    config = write_install(tmp_path, MINIMAL)
    monkeypatch.setenv("IPTVSYNC_RECEIVER_PORT", "abc")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert_one_line(str(info.value), "IPTVSYNC_RECEIVER_PORT", "[receiver] port", "'abc'", "environment")


def test_bad_dotenv_value_names_the_variable_and_the_dotenv_file(tmp_path):
    message, config = config_error(tmp_path, MINIMAL, {"IPTVSYNC_MONETIZZE_CHECK_PRODUCT_KEY": "maybe"})
    assert_one_line(message, "IPTVSYNC_MONETIZZE_CHECK_PRODUCT_KEY", str(config.parent / ".env"))


def test_bad_choice_from_environment_names_the_variable(tmp_path, monkeypatch):
    config = write_install(tmp_path, MINIMAL)
    monkeypatch.setenv("IPTVSYNC_EMAIL_BACKEND", "sendmail")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert_one_line(str(info.value), "IPTVSYNC_EMAIL_BACKEND", "backend", "sendmail")


# --- what a good file resolves to -------------------------------------------------------------------

def test_per_plan_overrides(tmp_path):
    toml = BASE_TOML.replace('[policy]', '[products.145388.plans.FN140235]\ndays = 90\nbouquets = [4, 5]\n\n'
                                         '[products.145388.plans.777]\nmax_connections = 2\npackage = 9\n\n'
                                         '[policy]', 1)
    product = load_config(write_install(tmp_path, toml)).products["145388"]
    assert product.plans == {
        "FN140235": PlanOverride(days=90, bouquets=(4, 5)),
        "777": PlanOverride(max_connections=2, package=9),
    }
    assert (product.days, product.bouquets, product.max_connections) == (30, (1, 2, 3), 1)  # untouched


def test_product_without_days_or_period_is_refused_when_the_config_loads(tmp_path):
    """Monetizze's current samples carry no plano[periodicidade] (ExemploPOSTCallback PR #39):
    a product that relied on it would fail when a buyer's postback arrives."""
    message, _ = config_error(tmp_path, MINIMAL.replace("days = 30\n", ""))
    assert "[products.145388] needs days or period" in message
    product = load_config(write_install(tmp_path, MINIMAL)).products["145388"]
    assert product.days == 30 and product.package is None and product.plans == {}


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    toml = BASE_TOML.replace('path = "iptvsync.db"', 'path = "data/ledger.db"')
    config = write_install(tmp_path / "etc" / "iptvsync", toml)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("etc/iptvsync/config.toml"))  # a relative --config, too
    assert cfg.path == tmp_path / "etc" / "iptvsync" / "config.toml"
    assert cfg.ledger_path == config.parent / "data" / "ledger.db"
    assert cfg.resolve(cfg.email.maildir) == config.parent / "mail"
    assert cfg.resolve(str(tmp_path / "abs.db")) == tmp_path / "abs.db"
    assert cfg.env_path == config.parent / ".env"


def test_dotenv_is_read_next_to_the_config_not_the_working_directory(tmp_path, monkeypatch):
    config = write_install(tmp_path / "install", BASE_TOML)
    (tmp_path / ".env").write_text("MONETIZZE_CHAVE_UNICA=wrong-one\n", "utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config(config).secrets.chave_unica == CHAVE


def test_config_is_read_only(cfg):
    with pytest.raises(AttributeError):
        cfg.receiver.port = 1
    with pytest.raises(AttributeError):
        cfg.path = Path("/")


def test_secrets_repr_never_shows_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-pass-value")
    monkeypatch.setenv("PANEL_MAIN_API_KEY", "panel-key-value")
    cfg = load_config(write_install(tmp_path, BASE_TOML))
    for text in (repr(cfg.secrets), str(cfg.secrets), repr(cfg), str(cfg), f"{cfg!r}"):
        for secret in (CHAVE, SECRET_KEY, "smtp-pass-value", "panel-key-value"):
            assert secret not in text


def test_require_returns_the_secret_or_names_the_variable_and_dotenv(tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-pass-value")
    monkeypatch.setenv("PANEL_MAIN_API_KEY", "panel-key-value")
    cfg = load_config(write_install(tmp_path, BASE_TOML))
    assert cfg.require("MONETIZZE_CHAVE_UNICA") == CHAVE
    assert cfg.require("IPTVSYNC_SECRET_KEY") == SECRET_KEY
    assert cfg.require("SMTP_PASSWORD") == "smtp-pass-value"
    assert cfg.require("PANEL_MAIN_API_KEY") == "panel-key-value"
    for name in ("MONETIZZE_CONSUMER_KEY", "SMTP_USERNAME"):
        with pytest.raises(ConfigError) as info:
            cfg.require(name)
        assert_one_line(str(info.value), name, str(tmp_path / ".env"))


# --- the CLI turns a config error into one line and exit 2 ------------------------------------------

_register()


def test_cli_bad_config_exits_2_with_one_line_naming_key_and_file(tmp_path):
    config = write_install(tmp_path, BASE_TOML.replace("port = 0", 'port = "eighty"'))
    result = CliRunner().invoke(app, ["--config", str(config), "inbox", "list"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "[receiver] port" in lines[0] and str(config) in lines[0]


def test_cli_missing_config_exits_2(tmp_path):
    missing = tmp_path / "config.toml"
    result = CliRunner().invoke(app, ["--config", str(missing), "inbox", "list"], catch_exceptions=False)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and str(missing) in result.stderr


def test_cli_bad_environment_value_exits_2(install):
    result = CliRunner().invoke(app, ["--config", str(install), "inbox", "list"],
                                env={"IPTVSYNC_RECEIVER_PORT": "abc"}, catch_exceptions=False)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "IPTVSYNC_RECEIVER_PORT" in result.stderr


def test_unreadable_dotenv_is_one_line_naming_it(tmp_path):
    config = write_install(tmp_path, MINIMAL)
    (tmp_path / ".env").write_bytes(b"SMTP_PASSWORD=cora\xe7\xe3o\n")  # saved as Latin-1
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert_one_line(str(info.value), str(tmp_path / ".env"))
    assert "cora" not in str(info.value)


# --- issue 11: mistakes caught at load time, one line naming the key and the file ----------------------

PANEL = '[panels.main]\nkind = "dry-run"\n'
PRODUCT = '[products.1]\npanel = "main"\ndays = 30\n'


@pytest.mark.parametrize(("toml", "fragments"), [
    (PANEL + '[panels.main.links]\nm3u = "{server}/get.php?u={user}"\n' + PRODUCT,
     ("[panels.main.links] m3u", "{user}", "{username}")),
    (PANEL + '[panels.main.links]\nepg = "{server}/xmltv.php?u={username"\n' + PRODUCT,
     ("[panels.main.links] epg", "{{")),
    (PANEL + '[panels.main.links]\nepg = "{}/xmltv.php"\n' + PRODUCT, ("[panels.main.links] epg", "{}")),
    (PANEL + '[panels.main.links]\nserver = "http://tv/{username}"\n' + PRODUCT,
     ("[panels.main.links] server", "{username}")),
    (PANEL + '[panels.main.links]\nserver = "tv.example.com:8080"\n' + PRODUCT,
     ("[panels.main.links] server", "http://")),
    ('[panels.main]\nkind = "xtream-codes"\nurl = "panel.example.com:25500"\n' + PRODUCT,
     ("[panels.main] url", "http://")),
    (PANEL + PRODUCT.replace("days = 30\n", "") + "days = -1\n", ("[products.1] days", "-1")),
    (PANEL + PRODUCT + "max_connections = 0\n", ("[products.1] max_connections",)),
    (PANEL + PRODUCT + "[products.1.plans.P]\ndays = -30\n", ("[products.1.plans.P] days",)),
    ("", ("empty",)),
    ("# only a comment\n", ("empty",)),
    (PANEL, ("[products.<code>]",)),
    (PANEL + PRODUCT + "[receiver]\nport = 99999\n", ("[receiver] port", "99999")),
    (PANEL + PRODUCT + "[receiver]\nport = -1\n", ("[receiver] port",)),
    (PANEL + PRODUCT + '[receiver]\nallowed_ips = ["300.1.1.1/24"]\n', ("[receiver] allowed_ips", "300.1.1.1/24")),
    (PANEL + PRODUCT + '[receiver]\ntrusted_proxies = ["localhost"]\n', ("[receiver] trusted_proxies",)),
])
def test_mistakes_caught_at_load(tmp_path, toml, fragments):
    message, config = config_error(tmp_path, toml)
    assert_one_line(message, *fragments, str(config))


def test_every_link_placeholder_that_the_email_fills_loads(tmp_path):
    toml = (PANEL + '[panels.main.links]\nserver = "https://tv.loja.example"\n'
            'm3u = "{server}/get.php?username={username}&password={password}&x={{literal}}"\n' + PRODUCT)
    cfg = load_config(write_install(tmp_path, toml))
    assert cfg.panels["main"].links.m3u.format(server="s", username="u", password="p") == \
        "s/get.php?username=u&password=p&x={literal}"


def test_port_given_on_the_command_line_is_checked_too(tmp_path):
    config = write_install(tmp_path, PANEL + PRODUCT)
    with pytest.raises(ConfigError) as info:
        load_config(config, overrides={"receiver.port": 70000})
    assert_one_line(str(info.value), "[receiver] port", "70000")


def test_a_real_panel_without_its_api_key_is_named(tmp_path):
    toml = '[panels.main]\nkind = "xui-admin"\nurl = "http://panel.example/abc"\n' + PRODUCT
    message, config = config_error(tmp_path, toml)
    assert_one_line(message, "PANEL_MAIN_API_KEY", str(config.parent / ".env"))
    assert load_config(write_install(tmp_path, toml, {"PANEL_MAIN_API_KEY": "k"})).panels["main"].caps.real


@pytest.mark.parametrize("key", ["not-a-fernet-key", "a" * 44, "c2hvcnQ="])
def test_invalid_secret_key(tmp_path, key):
    message, config = config_error(tmp_path, PANEL + PRODUCT, {"IPTVSYNC_SECRET_KEY": key})
    assert_one_line(message, "IPTVSYNC_SECRET_KEY", str(config.parent / ".env"))
    assert key not in message


def test_a_panel_whose_key_is_optional_loads_without_one(tmp_path):
    toml = '[panels.main]\nkind = "xtream-codes"\nurl = "http://panel.example:25500"\n' + PRODUCT
    assert load_config(write_install(tmp_path, toml)).panels["main"].caps.real


@pytest.mark.parametrize(("section", "fragments"), [
    ('[email]\nlanguage = "pt"\n', ("[email] language", "pt-BR", "'pt'")),  # would fail every email later
    ('[email]\nfrom = "not an address"\n', ("[email] from", "not an address")),  # a Message-ID "@not"
    ('[policy]\nmax_attempts = 0\n', ("[policy] max_attempts", "at least 1")),
])
def test_values_that_only_failed_at_send_time_fail_at_load(tmp_path, section, fragments):
    message, config = config_error(tmp_path, MINIMAL + section)
    assert_one_line(message, str(config), *fragments)


@settings(max_examples=1500, deadline=None)
@given(st.from_regex(_PLAIN_FROM, fullmatch=True) | st.text(max_size=30)
       | st.from_regex(r"[A-Za-zé ,\"]{0,8}<?[a-z.@<> ]{0,10}>?", fullmatch=True))
def test_the_from_address_check_answers_as_parseaddr_does(value):
    """``has_address`` reads plain forms itself (no email.utils import on every start) and
    must say what ``"@" in parseaddr(value)[1]`` says, for those forms and anything else."""
    assert has_address(value) == ("@" in parseaddr(value)[1])


def test_config_sections_are_frozen_records_with_value_equality(tmp_path):
    """The config classes are not generated by dataclass (see config._Record), but behave as
    frozen dataclasses: keyword construction with defaults, equality and hash by value, no
    assignment, ``dataclasses.replace``, a repr that never shows a secret."""
    cfg = load_config(write_install(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.policy.grace_days = 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        del cfg.receiver.port
    same = PolicySection(**{f.name: getattr(cfg.policy, f.name) for f in dataclasses.fields(PolicySection)})
    assert same == cfg.policy and hash(same) == hash(cfg.policy) and same is not cfg.policy
    assert dataclasses.replace(cfg.policy, grace_days=9) != cfg.policy
    assert dataclasses.replace(cfg.policy, grace_days=9).grace_days == 9
    product = ProductConfig(code="1", name="x", panel="main", days=30, max_connections=1, bouquets=(1,),
                            package=None, key="")
    assert PolicySection().grace_days == 3 and product.plans == {} and product.months is None
    with pytest.raises(TypeError, match="missing argument 'panel'"):
        ProductConfig(code="1", name="x")
    with pytest.raises(TypeError, match="unexpected"):
        PolicySection(grace=3)
    assert repr(PolicySection()).startswith("PolicySection(on_subscription_cancelled='end_of_period'")
    assert CHAVE not in repr(cfg) and SECRET_KEY not in repr(cfg)
