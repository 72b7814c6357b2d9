"""Issue 20: the admin console through Flask's test client: the login redirect, the same answer
for an unknown user and a wrong password, throttling, TOTP, roles (403), actions only by POST
(405 on GET), CSRF with and without the token and from another origin, session expiry through
the clock seam, headers, the error page, and hostile buyer data printed inert."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pyotp
import pytest
from freezegun import freeze_time
from support.admin import PASSWORD, add_operator, csrf_of, login, token

from iptvsync.admin import create_app
from iptvsync.ledger.db import Ledger
from iptvsync.ops import operators
from iptvsync.ops import subs as ops_subs

XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def app(cfg):
    return create_app(cfg)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def owner(cfg):
    return add_operator(cfg, "maria", "owner")


@pytest.fixture
def support(cfg):
    return add_operator(cfg, "joao", "support")


@pytest.fixture
def sub(cfg):
    ledger = Ledger(cfg.ledger_path)
    made, _ = ops_subs.grant(ledger, cfg, email="ana@example.com", product="145388", days=10, key="g1",
                             name=XSS_NAME)
    ledger.close()
    return made


def audit_rows(cfg, action=None):
    ledger = Ledger(cfg.ledger_path)
    try:
        rows = [{**r, "detail": json.loads(r["detail"])} for r in ledger.query("SELECT * FROM audit ORDER BY id")]
    finally:
        ledger.close()
    return [r for r in rows if action is None or r["action"] == action]


# --- login -------------------------------------------------------------------------------------------------

def test_every_page_sends_a_stranger_to_the_login_page(client):
    for path in ("/", "/assinaturas", "/assinaturas/1", "/postbacks", "/registro", "/operadores"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"].startswith("/login?next=" + path), response.headers["Location"]


def test_login_then_the_painel(client, owner, cfg):
    response = login(client, "maria")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and "Painel" in page.get_data(as_text=True)
    [row] = audit_rows(cfg, "admin.login")
    assert row["actor"] == "web:maria" and row["detail"]["client"] == "127.0.0.1"


def test_unknown_user_and_wrong_password_get_the_same_answer(client, owner, cfg):
    def answer(name, password):
        response = login(client, name, password)
        return response.status_code, re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))

    known, unknown = answer("maria", "wrong password"), answer("nobody", "wrong password")
    assert known == unknown and known[0] == 401 and "Usuário ou senha incorretos." in known[1]
    rows = audit_rows(cfg, "admin.login_failed")
    assert [r["detail"]["operator"] for r in rows] == ["maria", "(unknown)"]


def test_login_is_throttled_per_user_name_with_back_off(client, owner, cfg):
    with freeze_time("2026-12-01T12:00:00Z") as clock:
        for _ in range(3):
            assert login(client, "maria", "wrong password").status_code == 401
        refused = login(client, "maria", PASSWORD)  # even the right password waits its turn
        assert refused.status_code == 429 and "Muitas tentativas" in refused.get_data(as_text=True)
        # from another address too: the user name's key holds it
        assert login(client, "maria", PASSWORD, remote="192.0.2.9").status_code == 429
        clock.tick(timedelta(seconds=2))
        assert login(client, "maria", PASSWORD).status_code == 303
    assert len(audit_rows(cfg, "admin.login_failed")) == 3


def test_a_trusted_proxy_names_the_client(cfg, owner, install):
    install.write_text(install.read_text() + '\n[admin]\ntrusted_proxies = ["127.0.0.0/8"]\n')
    from iptvsync.config import load_config

    client = create_app(load_config(install)).test_client()
    login(client, "maria", **{"X-Forwarded-For": "6.6.6.6, 198.51.100.4"})
    assert audit_rows(cfg, "admin.login")[0]["detail"]["client"] == "198.51.100.4"
    other = create_app(cfg).test_client()  # no trusted proxy: the header is the client's word, ignored
    login(other, "maria", **{"X-Forwarded-For": "198.51.100.4"})
    assert audit_rows(cfg, "admin.login")[1]["detail"]["client"] == "127.0.0.1"


def test_totp_step_within_300_s_and_a_code_is_used_once(client, cfg, owner):
    ledger = Ledger(cfg.ledger_path)
    secret, _ = operators.enable_totp(ledger, cfg, "maria")
    ledger.close()
    first = login(client, "maria")
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/totp")
    assert client.get("/").status_code == 303  # a password alone opens nothing
    page = client.get("/login/totp").get_data(as_text=True)
    bad = client.post("/login/totp", data={"codigo": "12345x", "csrf": csrf_of(page)})
    assert bad.status_code == 401
    code = pyotp.TOTP(secret).now()
    good = client.post("/login/totp", data={"codigo": code, "csrf": csrf_of(page)})
    assert good.status_code == 303 and client.get("/").status_code == 200
    other = create_app(cfg).test_client()  # the same code again, in another browser
    login(other, "maria")
    again = other.post("/login/totp", data={"codigo": code, "csrf": csrf_of(other.get("/login/totp").get_data(
        as_text=True))})
    assert again.status_code == 401


def test_owner_must_have_totp_when_required(cfg, owner, install):
    text = install.read_text() + "\n[admin]\nrequire_totp = true\n"
    install.write_text(text)
    from iptvsync.config import load_config

    client = create_app(load_config(install)).test_client()
    response = login(client, "maria")
    assert response.status_code == 403 and "TOTP" in response.get_data(as_text=True)


# --- sessions ----------------------------------------------------------------------------------------------

def test_session_cookie_flags_and_idle_expiry(client, owner):
    with freeze_time("2026-12-01T12:00:00Z") as clock:
        response = login(client, "maria")
        cookie = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("iptvsync-session=")][0]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        clock.tick(timedelta(minutes=29))
        assert client.get("/").status_code == 200
        clock.tick(timedelta(minutes=31))
        expired = client.get("/registro")
        assert expired.status_code == 303 and "expired=1" in expired.headers["Location"]
        assert "Sua sessão terminou" in client.get(expired.headers["Location"]).get_data(as_text=True)


def test_over_tls_the_cookie_is_secure_and_host_prefixed(cfg, owner, install):
    install.write_text(install.read_text() + '\n[admin]\npublic_origin = "https://admin.example.com"\n')
    from iptvsync.config import load_config

    client = create_app(load_config(install)).test_client()
    response = login(client, "maria", **{"Origin": "https://admin.example.com"})
    cookie = [h for h in response.headers.getlist("Set-Cookie") if "-session=" in h][0]
    assert cookie.startswith("__Host-iptvsync-session=") and "Secure" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_logout_is_a_post_and_ends_the_session(client, owner, cfg):
    login(client, "maria")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout", data={"csrf": token(client)}).status_code == 303
    assert client.get("/").status_code == 303
    assert audit_rows(cfg, "admin.logout")[0]["actor"] == "web:maria"


def test_admin_user_logout_ends_a_browser_session_at_once(client, owner, cfg):
    login(client, "maria")
    ledger = Ledger(cfg.ledger_path)
    operators.logout(ledger, "maria")
    ledger.close()
    assert client.get("/").status_code == 303


# --- roles, methods, CSRF ----------------------------------------------------------------------------------

def test_support_may_look_resend_and_retry_but_not_extend(client, support, sub, cfg):
    login(client, "joao")
    sid = sub["id"]
    assert client.get(f"/assinaturas/{sid}").status_code == 200
    page = client.get(f"/assinaturas/{sid}").get_data(as_text=True)
    assert "action-extend" not in page and "action-resend" in page
    assert client.get(f"/assinaturas/{sid}/confirmar/extend").status_code == 403
    refused = client.post(f"/assinaturas/{sid}/extend", data={"csrf": token(client), "days": 3, "reason": "x"})
    assert refused.status_code == 403
    for path in ("/operadores",):
        assert client.get(path).status_code == 403
    done = client.post(f"/assinaturas/{sid}/resend", data={"csrf": token(client), "kind": "activation",
                                                           "reason": "buyer lost the email"})
    assert done.status_code == 303
    assert audit_rows(cfg, "email.resend")[0]["actor"] == "web:joao"
    assert not audit_rows(cfg, "grant.added")[1:]  # only the fixture's grant


@pytest.mark.parametrize("path", ["/assinaturas/1/extend", "/assinaturas/1/cancel", "/assinaturas/1/senha",
                                  "/postbacks/1/retry", "/postbacks/1/attach", "/registro/verificar",
                                  "/operadores/novo", "/operadores/maria/remover", "/logout"])
def test_actions_answer_405_to_get(client, owner, sub, path):
    login(client, "maria")
    assert client.get(path).status_code == 405


def test_extend_needs_the_csrf_token_and_the_same_origin(client, owner, sub, cfg):
    login(client, "maria")
    sid = sub["id"]
    form = {"days": "5", "reason": "pagou por pix", "key": "k1"}
    assert client.post(f"/assinaturas/{sid}/extend", data=form).status_code == 403
    assert client.post(f"/assinaturas/{sid}/extend", data={**form, "csrf": "forged"}).status_code == 403
    good = {**form, "csrf": token(client)}
    assert client.post(f"/assinaturas/{sid}/extend", data=good,
                       headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(f"/assinaturas/{sid}/extend", data=good,
                       headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert len(audit_rows(cfg, "grant.added")) == 1
    done = client.post(f"/assinaturas/{sid}/extend", data=good, headers={"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303 and done.headers["Location"] == f"/assinaturas/{sid}?ok=extend"
    row = audit_rows(cfg, "grant.added")[-1]
    assert row["actor"] == "web:maria" and row["detail"]["reason"] == "pagou por pix"
    assert row["detail"]["client"] == "127.0.0.1" and row["detail"]["days"] == 5
    again = client.post(f"/assinaturas/{sid}/extend", data=good)  # the same form twice: once
    assert again.headers["Location"].endswith("ok=noop") and len(audit_rows(cfg, "grant.added")) == 2


def test_an_action_without_a_reason_is_refused(client, owner, sub, cfg):
    login(client, "maria")
    response = client.post(f"/assinaturas/{sub['id']}/suspend", data={"csrf": token(client), "reason": "  "})
    assert response.status_code == 400
    assert not audit_rows(cfg, "subscription.suspended")


def test_reveal_password_is_a_post_and_audited(client, owner, sub, cfg):
    from iptvsync.engine.runner import run_process

    run_process(cfg)
    login(client, "maria")
    page = client.get(f"/assinaturas/{sub['id']}").get_data(as_text=True)
    assert 'id="password-masked"' in page and 'id="password"' not in page
    shown = client.post(f"/assinaturas/{sub['id']}/senha", data={"csrf": token(client)}).get_data(as_text=True)
    password = re.search(r'<code id="password">([^<]+)</code>', shown).group(1)
    row = audit_rows(cfg, "password.revealed")[0]
    assert row["actor"] == "web:maria" and password not in json.dumps(row)


# --- what every page is ------------------------------------------------------------------------------------

def test_headers_on_every_answer(client, owner):
    for response in (client.get("/login"), client.get("/static/admin.css")):
        h = response.headers
        assert h["Content-Security-Policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff" and h["Referrer-Policy"] == "no-referrer"
        assert h["X-Frame-Options"] == "DENY"


def test_hostile_buyer_data_is_printed_as_text(client, owner, sub):
    login(client, "maria")
    for path in (f"/assinaturas/{sub['id']}", "/assinaturas?q=ana@example.com", "/registro"):
        page = client.get(path).get_data(as_text=True)
        assert "<img src=x" not in page, path
    assert "&lt;img src=x onerror=alert(1)&gt;" in client.get(f"/assinaturas/{sub['id']}").get_data(as_text=True)


def test_no_page_has_inline_script_or_style(client, owner, sub):
    login(client, "maria")
    for path in ("/", "/assinaturas", f"/assinaturas/{sub['id']}", f"/assinaturas/{sub['id']}/confirmar/extend",
                 "/postbacks", "/registro", "/operadores", "/login"):
        page = client.get(path).get_data(as_text=True)
        assert "<script" not in page and " style=" not in page and "<style" not in page, path


def test_a_crash_shows_an_error_id_never_a_traceback(client, owner, monkeypatch, cfg, caplog):
    from iptvsync.ops import dashboard

    def boom(*_args):
        raise RuntimeError(f"secret {cfg.secrets.chave_unica} in a message")

    monkeypatch.setattr(dashboard, "painel", boom)
    login(client, "maria")
    response = client.get("/")
    text = response.get_data(as_text=True)
    assert response.status_code == 500
    error_id = re.search(r'class="error-id">([0-9a-f]{12})<', text).group(1)
    assert "Traceback" not in text and "RuntimeError" not in text and cfg.secrets.chave_unica not in text
    assert error_id in caplog.text


def test_pages_in_english_for_an_english_operator(client, cfg, sub):
    add_operator(cfg, "kim", "owner", language="en")
    login(client, "kim")
    assert "Subscriptions" in client.get("/assinaturas").get_data(as_text=True)


def test_search_finds_a_buyer_by_each_thing_they_may_say(client, owner, sub, cfg):
    login(client, "maria")
    for q in ("ana@example.com", "ANA@example.com", "img src", "manual:g1", str(sub["id"])):
        page = client.get("/assinaturas", query_string={"q": q}).get_data(as_text=True)
        assert f'href="/assinaturas/{sub["id"]}"' in page, q
    assert "Nada encontrado" in client.get("/assinaturas?q=nobody@example.com").get_data(as_text=True)


def test_grant_a_new_subscription_from_the_web(client, owner, cfg, support):
    login(client, "maria")
    form = client.get("/assinaturas/nova").get_data(as_text=True)
    key = re.search(r'name="key" value="([^"]+)"', form).group(1)
    data = {"csrf": csrf_of(form), "key": key, "email": "Bia@Example.com", "name": "Bia", "product": "145388",
            "days": "15", "reason": "cortesia de boas-vindas"}
    done = client.post("/assinaturas/nova", data=data)
    assert done.status_code == 303 and done.headers["Location"].endswith("?ok=grant")
    assert client.post("/assinaturas/nova", data=data).status_code == 303  # the same form twice: one grant
    rows = audit_rows(cfg, "grant.added")
    assert len(rows) == 1 and rows[0]["actor"] == "web:maria" and rows[0]["detail"]["reason"] == data["reason"]
    bad = client.post("/assinaturas/nova", data={**data, "key": "k2", "product": "999"})
    assert bad.status_code == 400
    other = create_app(cfg).test_client()
    login(other, "joao")
    assert other.get("/assinaturas/nova").status_code == 403


def test_every_page_gets_the_context_it_documents(app, client, owner, sub, cfg):
    """A template relies on exactly the names ``render.CONTEXTS`` lists for it, besides the shared ones."""
    from flask import template_rendered

    from iptvsync.admin.render import CONTEXTS, SHARED

    seen: dict[str, set[str]] = {}
    flask_globals = {"g", "request", "session", "config", "url_for", "get_flashed_messages"}

    def record(_sender, template, context, **_extra):
        seen[template.name] = set(context) - set(SHARED) - flask_globals

    template_rendered.connect(record, app)
    try:
        client.get("/login")
        login(client, "maria")
        client.post(f"/assinaturas/{sub['id']}/senha", data={"csrf": token(client)})  # no line yet: 400
        for path in ("/", "/assinaturas", f"/assinaturas/{sub['id']}", f"/assinaturas/{sub['id']}/confirmar/extend",
                     "/assinaturas/nova", "/postbacks", "/registro", "/operadores", "/postbacks/999"):
            client.get(path)
        deliver_one(cfg)
        client.get("/postbacks/1")
    finally:
        template_rendered.disconnect(record, app)
    totp = create_app(cfg)
    template_rendered.connect(record, totp)
    ledger = Ledger(cfg.ledger_path)
    operators.enable_totp(ledger, cfg, "maria")
    ledger.close()
    other = totp.test_client()
    login(other, "maria")
    other.get("/login/totp")
    assert set(seen) == set(CONTEXTS), set(CONTEXTS) ^ set(seen)
    for name, keys in seen.items():
        assert keys == set(CONTEXTS[name]), name


def deliver_one(cfg):
    from support.postbacks import deliver, payload

    ledger = Ledger(cfg.ledger_path)
    deliver(ledger, payload(2))
    ledger.close()


def test_the_panels_are_checked_live_only_when_asked(client, owner, monkeypatch):
    from iptvsync.ops import doctor

    calls = []
    real = doctor.check_panels
    monkeypatch.setattr(doctor, "check_panels", lambda cfg: calls.append(1) or real(cfg))
    login(client, "maria")
    assert client.get("/").status_code == 200 and calls == []  # a GET calls no panel
    page = client.post("/paineis", data={"csrf": token(client)}).get_data(as_text=True)
    assert calls == [1] and "panel main" in page and "dry-run: no real line is created" in page
    assert client.get("/paineis").status_code == 405


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_login_never_redirects_off_the_console(client, owner, target):
    token_ = csrf_of(client.get("/login", query_string={"next": target}).get_data(as_text=True))
    response = client.post("/login", data={"usuario": "maria", "senha": PASSWORD, "csrf": token_, "next": target})
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_login_goes_back_to_the_page_asked_for(client, owner, sub):
    asked = client.get(f"/assinaturas/{sub['id']}").headers["Location"]
    page = client.get(asked).get_data(as_text=True)
    nxt = re.search(r'name="next" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"usuario": "maria", "senha": PASSWORD, "csrf": csrf_of(page),
                                           "next": nxt})
    assert response.headers["Location"].startswith(f"/assinaturas/{sub['id']}")


def test_postbacks_retry_replay_and_attach_by_role(client, owner, support, cfg):
    from support.postbacks import deliver, payload

    from iptvsync.engine.runner import run_process

    deliver_one(cfg)
    run_process(cfg)
    other = create_app(cfg).test_client()
    login(other, "joao")
    assert other.get("/postbacks/1").status_code == 200
    assert other.post("/postbacks/1/replay", data={"csrf": token(other)}).status_code == 403
    assert other.post("/postbacks/1/attach", data={"csrf": token(other), "subscription": "1"}).status_code == 403
    # support may retry what failed, not apply again what was applied (a replay, an owner's)
    assert other.post("/postbacks/1/retry", data={"csrf": token(other)}).status_code == 400
    assert not audit_rows(cfg, "inbox.retry")
    login(client, "maria")
    assert client.post("/postbacks/1/replay", data={"csrf": token(client), "reason": "reapply"}).status_code == 303
    row = audit_rows(cfg, "inbox.replay")[0]
    assert row["actor"] == "web:maria" and row["detail"]["reason"] == "reapply"
    refused = client.post("/postbacks/1/attach", data={"csrf": token(client), "subscription": "1"})
    assert refused.status_code == 400  # not a held postback: the page says so, nothing changes
    assert not audit_rows(cfg, "inbox.attached")
    ledger = Ledger(cfg.ledger_path)
    deliver(ledger, payload(2, sale="51000003", product="999"))  # unmapped: a product with no mapping
    ledger.close()
    run_process(cfg)
    assert other.post("/postbacks/2/retry", data={"csrf": token(other)}).status_code == 303
    assert audit_rows(cfg, "inbox.retry")[0]["actor"] == "web:joao"
    body = client.get("/postbacks/1").get_data(as_text=True)
    i = body.find(cfg.secrets.chave_unica)
    assert i < 0, body[max(0, i - 300):i + 60]
    assert "fedcba9876543210fedcba9876543210" not in body


def test_back_to_the_login_form_between_the_password_and_the_code(client, cfg, owner):
    ledger = Ledger(cfg.ledger_path)
    operators.enable_totp(ledger, cfg, "maria")
    ledger.close()
    assert login(client, "maria").headers["Location"].startswith("/login/totp")
    assert login(client, "maria").headers["Location"].startswith("/login/totp")  # again: no CSRF refusal


def test_get_never_changes_the_ledger(client, owner, sub, cfg):
    """Every page, read as a GET, leaves every table as it was (sessions aside: their own bookkeeping)."""
    login(client, "maria")

    def snapshot():
        ledger = Ledger(cfg.ledger_path)
        try:
            tables = [r["name"] for r in ledger.query("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if r["name"] not in ("operator_sessions", "login_throttle")]
            return {t: ledger.query(f"SELECT * FROM {t}") for t in tables}
        finally:
            ledger.close()

    before = snapshot()
    for path in ("/", "/assinaturas", f"/assinaturas/{sub['id']}", f"/assinaturas/{sub['id']}/confirmar/cancel",
                 "/assinaturas/nova", "/postbacks", "/registro", "/operadores", "/login", "/logout",
                 f"/assinaturas/{sub['id']}/extend", "/paineis", "/registro/verificar"):
        client.get(path)
    assert snapshot() == before


def test_a_held_renewal_attached_from_the_console_extends_the_line_audited_as_the_operator(client, owner, cfg):
    """Issue 19 item 12's held postback (parcela 2 of a subscription never seen), attached through
    the console: the inbox row goes back to the queue tied to the subscription, the audit row
    names web:<user> with the reason, and the next ``process`` extends the line once."""
    from support.postbacks import deliver, payload

    from iptvsync.clock import parse_iso
    from iptvsync.engine.runner import run_process

    ledger = Ledger(cfg.ledger_path)
    deliver(ledger, payload(2, subscription="7000001"))  # the buyer's existing subscription
    ledger.close()
    run_process(cfg)
    ledger = Ledger(cfg.ledger_path)
    mine = ledger.one("SELECT id, paid_until FROM subscriptions")
    held = deliver(ledger, payload(2, sale="51000002", parcela=2))
    ledger.close()
    run_process(cfg)
    ledger = Ledger(cfg.ledger_path)
    assert ledger.one("SELECT status FROM inbox WHERE id = ?", (held,))["status"] == "held"
    ledger.close()
    login(client, "maria")
    assert f'action="/postbacks/{held}/attach"' in client.get(f"/postbacks/{held}").get_data(as_text=True)
    response = client.post(f"/postbacks/{held}/attach",
                           data={"csrf": token(client), "subscription": str(mine["id"]), "reason": "old buyer"})
    assert response.status_code == 303 and response.headers["Location"] == f"/postbacks/{held}"
    [row] = audit_rows(cfg, "inbox.attached")
    assert row["actor"] == "web:maria" and row["detail"]["reason"] == "old buyer"
    assert row["detail"]["inbox_id"] == held and row["subscription_id"] == mine["id"]
    run_process(cfg)
    ledger = Ledger(cfg.ledger_path)
    try:
        assert ledger.one("SELECT status FROM inbox WHERE id = ?", (held,))["status"] == "applied"
        after = ledger.one("SELECT paid_until FROM subscriptions WHERE id = ?", (mine["id"],))
        assert ledger.one("SELECT COUNT(*) n FROM subscriptions")["n"] == 1
    finally:
        ledger.close()
    assert parse_iso(after["paid_until"]) == parse_iso(mine["paid_until"]) + timedelta(days=30)


def test_the_painel_shows_each_panels_last_check_and_warns_of_low_credits(tmp_path):
    """Health and reseller credits come from the last live check (``panel_state``, written by
    "check panels" and ``doctor``), never from a panel call per page view; at or below
    ``[panels.X] low_credits`` the Painel warns, in the operator's language."""
    from support.install import BASE_TOML, write_install
    from support.xui import FakeXuiReseller

    from iptvsync.config import load_config

    with FakeXuiReseller(api_key="k", credits=12) as reseller:
        toml = BASE_TOML + f'\n[panels.res]\nkind = "xui-reseller"\nurl = "{reseller.url}"\nlow_credits = 15\n'
        cfg = load_config(write_install(tmp_path / "i", toml, env={"PANEL_RES_API_KEY": "k"}))
        assert cfg.panels["res"].low_credits == 15 and cfg.panels["main"].low_credits == 0
        add_operator(cfg, "maria", "owner")
        client = create_app(cfg).test_client()
        login(client, "maria")
        page = client.get("/").get_data(as_text=True)
        assert "ainda não verificado" in page and "Poucos créditos" not in page
        client.post("/paineis", data={"csrf": token(client)})
        reseller.credits = 99  # seen only by the next check: a page view calls no panel
        page = client.get("/").get_data(as_text=True)
        credits = re.search(r'id="panel-credits-res">(.*?)</td>', page, re.S).group(1)
        assert credits.startswith("12 ") and "Poucos créditos (aviso em 15 ou menos)" in credits
        health = re.search(r'id="panel-health-res">(.*?)</td>', page, re.S).group(1)
        assert "atenção" in health and "low credits" in health
        # the dry-run panel has no credits: its health shows, no credits column value
        assert re.search(r'id="panel-credits-main"></td>', page)
        assert "dry-run: no real line is created" in re.search(r'id="panel-health-main">(.*?)</td>', page, re.S)[1]
        client.post("/paineis", data={"csrf": token(client)})
        page = client.get("/").get_data(as_text=True)
    assert re.search(r'id="panel-credits-res">99</td>', page) and "Poucos créditos" not in page
    assert "check-ok" in re.search(r'id="panel-health-res">(.*?)</td>', page, re.S)[1]
