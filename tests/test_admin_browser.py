"""Issue 20: the admin console in a real browser (Debian's chromium driven by Playwright) against
the real ``admin serve`` on a free loopback port, and, for the hostile buyer, the real receiver.
Few flows, each what only a browser can prove: the login steps and the throttle, an action and its audit row,
a support user refused, hostile names inert, logout and expiry, the 375 px layout.

``SAVE_SCREENSHOTS=1`` also writes the Painel's screenshot to docs/img/painel.png (README)."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pyotp
import pytest
from support.admin import PASSWORD, add_operator
from support.binaries import need
from support.console import Console
from support.postbacks import payload

from iptvsync.engine.runner import run_process
from iptvsync.ledger.db import Ledger
from iptvsync.monetizze.form import build_form
from iptvsync.ops import operators

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_SALE = '77"><script>alert(2)</script>'
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    path = need("chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def console(install):
    running = Console(install)
    yield running
    running.stop()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(locale="pt-BR", viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    tab.dialogs = []  # any alert() that runs lands here
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


def log_in(page, console, name, password=PASSWORD):
    page.goto(console.url + "/")
    assert "/login" in page.url
    page.fill("input[name=usuario]", name)
    page.fill("input[name=senha]", password)
    page.click("button[type=submit]")


def sell(cfg, receiver, email="ana@example.com", name="Ana Compradora", sale="51000001"):
    """A purchase posted through the real receiver, then one ``process`` run."""
    p = payload(2, sale=sale, email=email)
    p["comprador"]["nome"] = name
    answer = receiver.post(build_form(p))
    assert answer.status_code == 200, answer.text
    run_process(cfg)


def test_login_wrong_password_then_the_painel_equals_the_ledger_and_logout(console, page, cfg, receiver):
    add_operator(cfg, "maria", "owner")
    unmapped = payload(2, sale="51000009", subscription="1104379", product="999", email="bia@example.com")
    assert receiver.post(build_form(unmapped)).status_code == 200  # a product with no [products.999]
    sell(cfg, receiver)
    log_in(page, console, "maria", "not the password")
    assert page.locator(".alert").inner_text() == "Usuário ou senha incorretos."
    log_in(page, console, "maria")
    assert page.locator("h1").first.inner_text().startswith("Painel")
    with sqlite3.connect(cfg.ledger_path) as db:
        active = db.execute("SELECT COUNT(*) FROM subscriptions WHERE applied_enabled = 1").fetchone()[0]
    assert active == 1
    assert page.locator("#active-lines").inner_text() == str(active)
    assert page.locator("#fig-activations-30d").inner_text() == "1"
    attention = page.locator("table.cards").first.inner_text()
    assert "bia@example.com" in attention and "sem produto" in attention
    if os.environ.get("SAVE_SCREENSHOTS"):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / "painel.png"), full_page=True)
    page.click("header form.logout button")
    assert "/login" in page.url
    page.goto(console.url + "/assinaturas")
    assert "/login" in page.url


def test_wrong_passwords_are_throttled_even_the_right_one_until_the_back_off_ends(console, page, cfg):
    """Several wrong passwords: the first few only say so, then the back-off grows (1, 2, 4 s…)
    until an attempt lands inside it and gets the Portuguese "too many attempts" page. The right
    password is refused meanwhile; once the ledger's throttle rows have aged past their block
    (as the expiry test ages the session), it is accepted."""
    add_operator(cfg, "maria", "owner")
    wait, attempts = 0, 0
    while wait < 5:  # until the back-off is long enough for the next two requests to land inside
        attempts += 1
        assert attempts <= 40, "the back-off never held an attempt"
        log_in(page, console, "maria", "not the password")
        alert = page.locator(".alert").inner_text()
        if attempts <= 3:
            assert alert == "Usuário ou senha incorretos.", alert  # the first failures are free
        elif alert.startswith("Muitas tentativas."):
            wait = int(re.fullmatch(r"Muitas tentativas\. Tente de novo em (\d+) s\.", alert).group(1))
        else:
            assert alert == "Usuário ou senha incorretos.", alert
    log_in(page, console, "maria")  # the right password, inside the back-off
    assert "/login" in page.url and page.locator(".alert").inner_text().startswith("Muitas tentativas.")
    assert page.locator("h1").first.inner_text() != "Painel"
    with sqlite3.connect(cfg.ledger_path) as db:
        failures = db.execute("SELECT MAX(failures) FROM login_throttle").fetchone()[0]
        audited = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'admin.login_failed'").fetchone()[0]
        db.execute("UPDATE login_throttle SET blocked_until = '2000-01-01T00:00:00Z'")  # the back-off is over
    assert failures >= 6 and audited == failures  # each heard failure is counted and audited
    log_in(page, console, "maria")
    assert page.locator("h1").first.inner_text().startswith("Painel")


def test_totp_login(console, page, cfg):
    add_operator(cfg, "maria", "owner")
    ledger = Ledger(cfg.ledger_path)
    secret, _ = operators.enable_totp(ledger, cfg, "maria")
    ledger.close()
    log_in(page, console, "maria")
    assert "/login/totp" in page.url
    page.fill("input[name=codigo]", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.click("button[type=submit]")
    assert page.locator(".alert").inner_text() == "Código incorreto ou já usado."
    page.fill("input[name=codigo]", pyotp.TOTP(secret).now())
    page.click("button[type=submit]")
    assert page.locator("h1").first.inner_text().startswith("Painel")


def test_find_the_buyer_read_the_timeline_extend_and_the_audit_names_the_operator(console, page, cfg, receiver):
    add_operator(cfg, "maria", "owner")
    sell(cfg, receiver)
    log_in(page, console, "maria")
    page.click("nav >> text=Assinaturas")
    page.fill("input[name=q]", "ana@example.com")
    page.click("form.filters button")
    page.click("table.subs tbody tr >> nth=0 >> a")
    timeline = page.locator("table.timeline").inner_text()
    for seen in ("Pagamento aprovado", "Linha criada no painel", "E-mail enviado", "Postback: aprovada"):
        assert seen in timeline, timeline
    page.click("#action-extend")
    page.fill("input[name=days]", "7")
    page.fill("textarea[name=reason]", "pagou por pix, comprovante no WhatsApp")
    page.click("#confirm")
    assert page.locator(".notice").inner_text() == "Feito."
    assert "Dias concedidos" in page.locator("table.timeline").inner_text()
    page.click("nav >> text=Registro")
    first = page.locator("table.audit tbody tr").first
    assert first.locator(".actor").inner_text() == "web:maria"
    assert "pagou por pix" in first.locator(".detail").inner_text()


def test_a_support_user_is_refused_an_extend(console, page, cfg, receiver):
    add_operator(cfg, "joao", "support")
    sell(cfg, receiver)
    log_in(page, console, "joao")
    page.goto(console.url + "/assinaturas/1")
    assert page.locator("#action-resend").count() == 1 and page.locator("#action-extend").count() == 0
    answer = page.goto(console.url + "/assinaturas/1/confirmar/extend")
    assert answer.status == 403 and "Seu papel não permite isso." in page.content()
    assert page.locator("nav >> text=Operadores").count() == 0
    # a POST with the browser's own session cookie but without the form's token is refused
    forged = page.request.post(console.url + "/assinaturas/1/resend", form={"kind": "activation", "reason": "x"})
    assert forged.status == 403
    # what support may do: resend the access, with a reason
    page.goto(console.url + "/assinaturas/1")
    page.click("#action-resend")
    page.fill("textarea[name=reason]", "cliente apagou o email")
    page.click("#confirm")
    assert page.locator(".notice").inner_text() == "Feito."
    with sqlite3.connect(cfg.ledger_path) as db:
        rows = db.execute("SELECT actor, detail FROM audit WHERE action = 'email.resend'").fetchall()
    assert len(rows) == 1 and rows[0][0] == "web:joao" and "cliente apagou o email" in rows[0][1]


def test_a_hostile_buyer_posted_through_the_receiver_is_inert(console, page, cfg, receiver):
    add_operator(cfg, "maria", "owner")
    sell(cfg, receiver, email="evil@example.com", name=XSS_NAME, sale=XSS_SALE)
    with sqlite3.connect(cfg.ledger_path) as db:
        assert db.execute("SELECT buyer_name FROM subscriptions").fetchone()[0] == XSS_NAME
        inbox_id = db.execute("SELECT id FROM inbox WHERE sale_code = ?", (XSS_SALE,)).fetchone()[0]
    log_in(page, console, "maria")
    for path in ("/", "/assinaturas", "/assinaturas?q=evil@example.com", "/assinaturas/1", "/postbacks",
                 f"/postbacks/{inbox_id}", "/registro", f"/postbacks?q={XSS_SALE}"):
        page.goto(console.url + path)
        page.wait_for_load_state("load")
        assert page.locator("img").count() == 0, path
        assert page.locator("script").count() == 0, path
    page.goto(console.url + "/assinaturas/1")
    assert XSS_NAME in page.locator("dl.facts").inner_text()  # shown as the text it is
    assert page.dialogs == []


def test_an_idle_session_ends_in_the_browser(console, page, cfg):
    add_operator(cfg, "maria", "owner")
    log_in(page, console, "maria")
    assert page.locator("h1").first.inner_text().startswith("Painel")
    with sqlite3.connect(cfg.ledger_path) as db:  # 31 minutes without a request, as the ledger sees it
        db.execute("UPDATE operator_sessions SET last_seen_at = '2000-01-01T00:00:00Z'")
    page.goto(console.url + "/assinaturas")
    assert "/login" in page.url and "Sua sessão terminou" in page.content()


def test_375_px_wide_nothing_scrolls_sideways_and_lists_are_cards(console, chromium, cfg, receiver):
    add_operator(cfg, "maria", "owner")
    sell(cfg, receiver, email="a-very-long-address-of-a-buyer.with.dots@some-long-domain.example.com",
         name="Maria da Conceição Aparecida dos Santos Oliveira")
    context = chromium.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, console, "maria")
    for path in ("/", "/assinaturas", "/assinaturas/1", "/assinaturas/1/confirmar/extend", "/postbacks",
                 "/postbacks/1", "/registro", "/operadores"):
        page.goto(console.url + path)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (path, width)
    page.goto(console.url + "/assinaturas")
    assert page.evaluate("getComputedStyle(document.querySelector('table.subs thead')).display") == "none"
    assert page.evaluate("getComputedStyle(document.querySelector('table.subs tbody tr')).display") == "block"
    context.close()
