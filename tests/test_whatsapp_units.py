"""The WhatsApp channel's pieces on their own: phone numbers, texts and template variables,
the ``[whatsapp]`` config, the outbox migration, and each gateway's reading of its replies."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from support.install import BASE_TOML, write_install

from iptvsync.config import MESSAGE_KINDS, load_config
from iptvsync.errors import ConfigError, NotifyError
from iptvsync.ledger.db import Ledger
from iptvsync.ledger.migrations import migrations
from iptvsync.ledger.outbox import queue
from iptvsync.mail.render import KINDS, sample_context
from iptvsync.mail.whatsapp import CLOUD_PARAMS, cloud_params, render_text
from iptvsync.notify import cloud_api, evolution, zapi
from iptvsync.notify._http import GatewayHttp, Reply
from iptvsync.notify.phone import normalize
from iptvsync.notify.registry import NAMES, capabilities


@pytest.mark.parametrize("raw,e164", [
    ("(11) 98765-4321", "+5511987654321"), ("11987654321", "+5511987654321"), ("5511987654321", "+5511987654321"),
    ("+55 11 98765-4321", "+5511987654321"), ("011 98765-4321", "+5511987654321"),
    ("11 8765-4321", "+5511987654321"),  # an old mobile typed without the ninth digit gets it
    ("(21) 8765-4321", "+5521987654321"), ("+55 (31) 9 8765-4321", "+5531987654321"),
    ("+351 912 345 678", "+351912345678"),  # a foreign mobile with its country code
])
def test_phones_to_e164(raw, e164):
    assert normalize(raw) == (e164, None)


@pytest.mark.parametrize("raw,issue", [(None, "missing"), ("", "missing"), ("00000000000", "missing"),
                                       ("abc", "missing"), ("98765-4321", "invalid: …4321"),
                                       ("(11) 3333-4444", "not a mobile: …4444")])
def test_phones_without_a_whatsapp_number_say_why(raw, issue):
    assert normalize(raw) == (None, issue)


def test_every_kind_renders_in_both_languages_as_plain_whatsapp_text():
    assert set(KINDS) == set(MESSAGE_KINDS) == set(CLOUD_PARAMS)
    for language in ("pt-BR", "en"):
        for kind in KINDS:
            text = render_text(kind, sample_context(kind), language)
            assert "<" not in text and "{{" not in text and "\n\n\n" not in text and "*IPTV Mensal*" in text


def test_a_buyer_name_cannot_add_lines_or_break_template_variables():
    context = {**sample_context("activation"), "buyer_name": "maria\n\nSenha falsa: 123\t\t  x"}
    text = render_text("activation", context)
    assert text.startswith("Olá, Maria! Seu pagamento") and "Senha falsa" not in text
    params = cloud_params("activation", {**context, "support": ""})
    assert params[0] == "Maria" and params[-1] == "-"
    assert all(p and "\n" not in p and "\t" not in p and "     " not in p for p in params)


def test_a_broken_override_template_fails_loudly(tmp_path):
    (tmp_path / "pt-BR").mkdir()
    (tmp_path / "pt-BR" / "renewal.txt").write_text("{{ nope }}")
    with pytest.raises(Exception, match="nope"):
        render_text("renewal", sample_context("renewal"), "pt-BR", tmp_path)


# --- config -----------------------------------------------------------------------------------------

def test_whatsapp_config_defaults_off_and_reads_channels_per_product(tmp_path):
    cfg = load_config(write_install(tmp_path / "a", BASE_TOML))
    assert cfg.whatsapp.gateway == "" and cfg.channels("145388") == ("email",)
    assert cfg.cloud_templates["activation"] == "iptvsync_activation"
    toml = BASE_TOML.replace("bouquets = [1, 2, 3]", 'bouquets = [1, 2, 3]\nchannels = ["email", "whatsapp"]') + (
        '\n[whatsapp]\ngateway = "cloud-api"\nphone_number_id = "123"\n'
        '[whatsapp.cloud_templates]\nactivation = "acesso_liberado"\n')
    cfg = load_config(write_install(tmp_path / "b", toml, env={"WHATSAPP_TOKEN": "t"}))
    assert cfg.channels("145388") == ("email", "whatsapp") and cfg.channels("999") == ("email",)
    assert cfg.cloud_templates["activation"] == "acesso_liberado" and cfg.secrets.whatsapp_token == "t"
    assert repr(cfg.secrets) == "Secrets(<redacted>)"


@pytest.mark.parametrize("section,env,message", [
    ('gateway = "z-api"\ninstance = "x"\nchannels = ["email", "whatsapp"]\n', {"WHATSAPP_TOKEN": "t"},
     "WHATSAPP_CLIENT_TOKEN is not set"),
    ('gateway = "evolution"\nchannels = ["email", "whatsapp"]\n', {"WHATSAPP_TOKEN": "t"},
     "missing required key 'url' in [whatsapp] (gateway = evolution)"),
    ('gateway = "twilio"\n', {}, "[whatsapp] gateway must be one of , evolution, z-api, cloud-api"),
    ('gateway = "cloud-api"\nphone_number_id = "1"\nchannels = ["whatsapp"]\n[whatsapp.cloud_templates]\n'
     'welcome = "x"\n', {"WHATSAPP_TOKEN": "t"}, "unknown key 'welcome' in [whatsapp.cloud_templates]"),
    ('gateway = "cloud-api"\nphone_number_id = "1"\nchannels = ["whatsapp"]\n[whatsapp.cloud_templates]\n'
     'activation = "Acesso Liberado"\n', {"WHATSAPP_TOKEN": "t"}, "must be a template name of lowercase"),
])
def test_whatsapp_config_errors(tmp_path, section, env, message):
    with pytest.raises(ConfigError) as exc:
        load_config(write_install(tmp_path / "i", BASE_TOML + "\n[whatsapp]\n" + section, env=env))
    assert message in str(exc.value) and "\n" not in str(exc.value)


# --- ledger -----------------------------------------------------------------------------------------

def test_upgrade_keeps_emails_and_makes_the_channel_part_of_the_key(tmp_path):
    path = tmp_path / "old.db"
    names = migrations.names
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m019w_whatsapp_channel")
    old.execute("INSERT INTO subscriptions (key, product_code, panel, created_at, updated_at)"
                " VALUES ('sale:1', '145388', 'main', 'x', 'x')")
    old.execute("ALTER TABLE outbox ADD COLUMN other_branch TEXT")  # another branch's migration, merged first
    old.execute("INSERT INTO outbox (subscription_id, kind, cycle, to_addr, created_at, status, other_branch)"
                " VALUES (1, 'activation', '1', 'maria@example.com', 'x', 'sent', 'kept')")
    old.conn.commit()
    old.close()
    led = Ledger(path)
    assert led.pending_migrations() == [] and "m019x_gateway_state" in names
    assert led.one("SELECT channel, status, unknowns, other_branch FROM outbox") == {
        "channel": "email", "status": "sent", "unknowns": 0, "other_branch": "kept"}
    indexes = {r["name"] for r in led.query("SELECT name FROM sqlite_master WHERE tbl_name = 'outbox'")}
    assert {"outbox_status", "outbox_channel"} <= indexes
    from iptvsync.clock import now

    with led.tx() as conn:
        conn.execute("UPDATE subscriptions SET buyer_phone = '+5511987654321'")
        assert queue(conn, subscription_id=1, kind="activation", cycle="1", to_addr="maria@example.com", now=now())
        assert not queue(conn, subscription_id=1, kind="activation", cycle="1", to_addr="maria@example.com",
                         now=now())
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO outbox (subscription_id, kind, cycle, to_addr, created_at, channel)"
                          " VALUES (1, 'activation', '1', 'x', 'x', 'whatsapp')")
    assert [r["channel"] for r in led.query("SELECT channel FROM outbox ORDER BY id")] == ["email", "whatsapp"]
    led.close()


# --- replies ---------------------------------------------------------------------------------------

HTTP = GatewayHttp("gw", 5, secrets=["s3cret"])


def judged(module, status, body) -> NotifyError | None:
    try:
        module.raise_for_response(HTTP, Reply(status, body, {}))
    except NotifyError as exc:
        return exc
    return None


@pytest.mark.parametrize("module,status,body,flags", [
    (evolution, 201, {"key": {"id": "1"}}, None),
    (evolution, 400, {"status": 400, "response": {"message": [{"exists": False, "jid": "x", "number": "55"}]}},
     (True, False, False)),
    (evolution, 400, {"status": 400, "response": {"message": "Error: Timed Out"}}, (False, True, False)),
    (evolution, 500, {"status": 500, "response": {"message": "Connection Closed"}}, (False, False, True)),
    (evolution, 500, {"status": 500, "response": {"message": "Internal Server Error"}}, (False, True, False)),
    (evolution, 401, {"status": 401, "response": {"message": "Unauthorized"}}, (True, False, True)),
    (zapi, 200, {"zaapId": "z", "messageId": "m"}, None),
    (zapi, 400, {"error": "your client-token is not configured"}, (True, False, True)),
    (zapi, 502, "<html>Bad Gateway</html>", (False, True, False)),
    (cloud_api, 200, {"messages": [{"id": "wamid.1"}]}, None),
    (cloud_api, 401, {"error": {"code": 190, "message": "expired"}}, (True, False, True)),
    (cloud_api, 429, {"error": {"code": 130429, "message": "Rate limit hit"}}, (False, False, True)),
    (cloud_api, 400, {"error": {"code": 131056, "message": "pair rate limit"}}, (False, False, False)),
    (cloud_api, 500, {"error": {"code": 131000, "message": "Something went wrong"}}, (False, True, False)),
    (cloud_api, 404, {"error": {"code": 132001, "message": "Template name does not exist"}}, (True, False, False)),
])
def test_each_gateway_reads_its_replies(module, status, body, flags):
    exc = judged(module, status, body)
    assert (None if exc is None else (exc.permanent, exc.ambiguous, exc.gateway_wide)) == flags


def test_no_secret_in_an_error_message():
    exc = judged(zapi, 400, {"error": "bad token s3cret"})
    assert "s3cret" not in str(exc) and "***" in str(exc)


def test_every_gateway_has_caps():
    assert NAMES == ("evolution", "z-api", "cloud-api")
    assert [capabilities(n).templates_only for n in NAMES] == [False, False, True]


# --- the pt-BR chapter ----------------------------------------------------------------------------

CHAPTER = Path(__file__).resolve().parent.parent / "docs" / "pt-BR" / "whatsapp.md"


def test_the_chapters_cloud_templates_take_the_variables_iptvsync_sends():
    text = CHAPTER.read_text("utf-8")
    for kind, params in CLOUD_PARAMS.items():
        match = re.search(rf"\*\*`iptvsync_{kind}`\*\*.*?```text\n(.*?)```", text, re.DOTALL)
        assert match, kind
        body = match.group(1).strip()
        assert re.findall(r"\{\{(\d+)\}\}", body) == [str(n) for n in range(1, len(params) + 1)], kind
        assert not body.endswith("}}") and not body.startswith("{{"), kind  # Meta refuses those


def test_the_chapters_samples_are_what_buyers_get():
    text = CHAPTER.read_text("utf-8")
    for kind in KINDS:
        assert render_text(kind, sample_context(kind)) in text, kind
