"""Emails: templates, messages, and delivery through a real SMTP server (aiosmtpd) or to disk."""

import html
import os
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

import jinja2
import pytest
from freezegun import freeze_time
from support.smtp import QUEUED_REPLY, free_port, smtp_server

from iptvsync.errors import MailError
from iptvsync.mail.backends import MaildirBackend, SmtpBackend
from iptvsync.mail.message import build_message, make_message_id
from iptvsync.mail.render import (
    KINDS,
    RenderedEmail,
    available_languages,
    localdt,
    render,
    required_keys,
    sample_context,
)

LANGUAGES = ("pt-BR", "en")
BUYER = "maria@example.com"
FROM = "IPTV Exemplo <no-reply@example.com>"
SMTP_USER, SMTP_PASSWORD = "mailer@example.com", "s3cret-Pa55word-XYZ"


def message(kind="activation", language="pt-BR", key="sub-1:activation:0", to=BUYER):
    rendered = render(kind, sample_context(kind), language)
    return build_message(rendered, to_addr=to, to_name="Maria da Silva", from_addr=FROM,
                         message_id=make_message_id("example.com", key))


def parts(msg):
    return (msg.get_body(preferencelist=("plain",)).get_content(),
            msg.get_body(preferencelist=("html",)).get_content())


# --- rendering ------------------------------------------------------------------------------

def test_shipped_languages():
    assert available_languages() == ["en", "pt-BR"]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_every_language(kind, language):
    context = sample_context(kind)
    assert set(context) == set(required_keys(kind))
    email = render(kind, context, language)
    assert email.subject and "\n" not in email.subject and email.subject == email.subject.strip()
    assert context["username"] in email.text and context["username"] in email.html
    assert context["support"] in email.text and context["support"] in email.html
    assert email.html.startswith("<!DOCTYPE html>") and f'<html lang="{language}">' in email.html
    for body in (email.subject, email.text, email.html):
        assert "{{" not in body and "{%" not in body
    assert "<script" not in email.html and "<img" not in email.html and "<link" not in email.html


@pytest.mark.parametrize("kind", KINDS)
def test_every_missing_context_key_raises(kind):
    for key in required_keys(kind):
        context = sample_context(kind)
        del context[key]
        with pytest.raises(ValueError, match=key):
            render(kind, context)


def test_override_referencing_an_unknown_variable_raises(tmp_path):
    (tmp_path / "activation.subject.txt").write_text("Hi {{ nickname }}")
    with pytest.raises(jinja2.UndefinedError, match="nickname"):
        render("activation", sample_context("activation"), templates_dir=tmp_path)


def test_renewal_does_not_resend_the_password_in_clear():
    context = sample_context("renewal")
    assert "password" not in context
    email = render("renewal", context)
    assert "Senha:" not in email.text and context["m3u"] in email.text


def test_unknown_language_and_kind_are_refused():
    with pytest.raises(ValueError, match=r"available: en, pt-BR"):
        render("activation", sample_context("activation"), "es")
    with pytest.raises(ValueError, match="unknown email kind"):
        render("welcome", sample_context("activation"))


def test_html_escapes_context_but_text_does_not():
    context = sample_context("activation") | {"product_name": "Filmes & <Séries>"}
    email = render("activation", context)
    assert "Filmes &amp; &lt;Séries&gt;" in email.html and "<Séries>" not in email.html
    assert "Filmes & <Séries>" in email.text and "Filmes & <Séries>" in email.subject


def test_local_time_is_sao_paulo():
    moment = datetime(2026, 12, 20, 17, 37, 57, tzinfo=UTC)
    assert localdt(moment) == localdt("2026-12-20T17:37:57Z") == "20/12/2026 14:37"
    assert localdt(moment, "en") == "20 Dec 2026 14:37"
    with pytest.raises(ValueError, match="aware"):
        localdt(datetime(2026, 12, 20, 17, 37))


def test_reminder_counts_days():
    context = sample_context("reminder")
    assert "em 3 dias" in render("reminder", context).subject
    assert "amanhã" in render("reminder", context | {"days_left": 1}).subject
    assert "today" in render("reminder", context | {"days_left": 0}, "en").subject


def test_greeting_uses_the_first_name_and_survives_an_empty_name():
    context = sample_context("expired")
    assert render("expired", context | {"buyer_name": "JOÃO PEDRO"}).text.startswith("Olá, João!")
    assert render("expired", context | {"buyer_name": ""}).text.startswith("Olá!")


def test_override_folder_wins(tmp_path):
    (tmp_path / "pt-BR").mkdir()
    (tmp_path / "pt-BR" / "activation.subject.txt").write_text("Bem-vindo, {{ buyer_name }}!\n")
    (tmp_path / "activation.txt").write_text("Login: {{ username }} / {{ password }}\n")
    email = render("activation", sample_context("activation"), templates_dir=str(tmp_path))
    assert email.subject == "Bem-vindo, Maria da Silva!"
    assert email.text == "Login: mariasilva7k2q / Zr8tW4nLqE\n"
    assert "Seu acesso está liberado!" in email.html  # not overridden: the shipped one
    english = render("activation", sample_context("activation"), "en", templates_dir=tmp_path)
    assert english.subject == "Your access is ready: IPTV Mensal"  # pt-BR/ only overrides pt-BR
    assert english.text.startswith("Login:")  # the flat folder overrides every language


def test_a_new_language_can_be_added_from_the_override_folder(tmp_path):
    (tmp_path / "es").mkdir()
    for suffix in ("subject.txt", "txt", "html"):
        (tmp_path / "es" / f"expired.{suffix}").write_text("Hola {{ buyer_name }}, {{ expires_at|date }}")
    assert "es" in available_languages(tmp_path)
    email = render("expired", sample_context("expired"), "es", tmp_path)
    assert email.subject == "Hola Maria da Silva, 2026-12-20"  # ISO dates outside pt-BR and en


# --- messages -------------------------------------------------------------------------------

def test_message_id_is_deterministic_per_outbox_key():
    first = make_message_id("Example.com", "sub-1:activation:0")
    assert first == make_message_id("example.com", "sub-1:activation:0")
    assert first != make_message_id("example.com", "sub-1:activation:1")
    assert first.startswith("<") and first.endswith("@example.com>")
    assert make_message_id("Exemplo-Ação.com.br", "k").endswith("@xn--exemplo-ao-n5a1c.com.br>")
    with pytest.raises(ValueError):
        make_message_id("exa mple.com", "k")


def test_message_headers_and_parts():
    with freeze_time("2026-11-20 17:37:57"):
        msg = message()
    assert msg.get_content_type() == "multipart/alternative"
    assert parsedate_to_datetime(msg["Date"]) == datetime(2026, 11, 20, 17, 37, 57, tzinfo=UTC)
    assert msg["To"] == "Maria da Silva <maria@example.com>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "Reply-To" not in msg
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"


def test_a_name_cannot_break_out_of_its_header():
    rendered = RenderedEmail("s", "t", "<p>h</p>")
    msg = build_message(rendered, to_addr=BUYER, to_name="Maria\r\nBcc: evil@example.com", from_addr=FROM,
                        message_id="<a@example.com>", reply_to="Suporte <suporte@example.com>")
    assert "Bcc" not in msg and msg["Reply-To"] == "Suporte <suporte@example.com>"
    with pytest.raises(ValueError):
        build_message(rendered, to_addr="not-an-address", to_name=None, from_addr=FROM,
                      message_id="<a@example.com>")
    with pytest.raises(ValueError):
        build_message(rendered, to_addr=BUYER, to_name=None, from_addr=FROM, message_id="no-brackets")


# --- SMTP -----------------------------------------------------------------------------------

def test_activation_received_over_smtp_in_portuguese():
    msg = message()
    with smtp_server() as server:
        reply = SmtpBackend(server.host, server.port, security="none").send(msg)
    assert reply == QUEUED_REPLY
    [received] = server.received
    assert received.rcpt_tos == [BUYER] and received.mail_from == "no-reply@example.com"
    got = received.message()
    assert got["From"] == FROM
    assert got["To"] == "Maria da Silva <maria@example.com>"
    assert got["Subject"] == "Seu acesso está liberado: IPTV Mensal"
    assert got["Message-ID"] == make_message_id("example.com", "sub-1:activation:0")
    assert parsedate_to_datetime(got["Date"]).tzinfo is not None
    text, body = parts(got)
    context = sample_context("activation")
    for value in ("username", "password", "server", "m3u", "epg"):
        assert context[value] in text
        assert html.escape(context[value]) in body
    for shown in (text, body):
        assert "20/12/2026 14:37" in shown and "horário de Brasília" in shown
        assert "Usuário" in shown and "Senha" in shown and context["support"] in shown
        assert "IPTV Smarters" in shown and "TiviMate" in shown


def test_activation_in_english_when_asked():
    with smtp_server() as server:
        SmtpBackend(server.host, server.port, security="none").send(message(language="en"))
    got = server.received[0].message()
    text, body = parts(got)
    assert got["Subject"] == "Your access is ready: IPTV Mensal"
    for shown in (text, body):
        assert "Username" in shown and "Password" in shown and "20 Dec 2026 14:37" in shown
        assert "Senha" not in shown


def test_starttls_with_login_and_a_self_signed_certificate():
    with smtp_server(tls="starttls", auth=(SMTP_USER, SMTP_PASSWORD)) as server:
        backend = SmtpBackend(server.host, server.port, security="starttls", username=SMTP_USER,
                              password=SMTP_PASSWORD, ssl_context=server.client_context)
        backend.check()
        assert backend.send(message()) == QUEUED_REPLY
    assert len(server.received) == 1
    assert server.logins == [SMTP_USER, SMTP_USER]  # check() and send() both logged in
    assert SMTP_PASSWORD not in repr(backend)


def test_implicit_tls_with_login():
    with smtp_server(tls="implicit", auth=(SMTP_USER, SMTP_PASSWORD)) as server:
        backend = SmtpBackend(server.host, server.port, security="tls", username=SMTP_USER,
                              password=SMTP_PASSWORD, ssl_context=server.client_context)
        backend.check()
        backend.send(message())
    assert len(server.received) == 1
    assert server.logins == [SMTP_USER, SMTP_USER]


def send_error(backend, msg=None) -> MailError:
    with pytest.raises(MailError) as caught:
        backend.send(msg or message())
    return caught.value


def test_wrong_password_is_retryable_and_does_not_leak():
    with smtp_server(tls="starttls", auth=(SMTP_USER, "the-right-one")) as server:
        backend = SmtpBackend(server.host, server.port, username=SMTP_USER, password=SMTP_PASSWORD,
                              ssl_context=server.client_context)
        error = send_error(backend)
        with pytest.raises(MailError):
            backend.check()
    assert not error.permanent
    assert "login" in str(error) and SMTP_USER in str(error) and "535" in str(error)
    assert server.received == []


def test_untrusted_certificate_is_refused():
    with smtp_server(tls="starttls") as server:
        error = send_error(SmtpBackend(server.host, server.port, security="starttls"))
    assert not error.permanent and "TLS" in str(error)


def test_plain_server_without_starttls_is_refused_rather_than_used_in_clear():
    with smtp_server() as server:
        error = send_error(SmtpBackend(server.host, server.port, security="starttls"))
    assert not error.permanent and "STARTTLS" in str(error)
    assert server.received == []


@pytest.mark.parametrize(("options", "permanent"), [
    ({"rcpt_replies": {BUYER: "550 5.1.1 No such user"}}, True),
    ({"rcpt_replies": {BUYER: "451 4.7.1 Greylisted, try again later"}}, False),
    ({"data_reply": "554 5.7.1 Message rejected as spam"}, True),
    ({"data_reply": "451 4.3.0 Temporary failure, try again"}, False),
])
def test_refusals(options, permanent):
    with smtp_server(**options) as server:
        error = send_error(SmtpBackend(server.host, server.port, security="none"))
    assert error.permanent is permanent
    reply = next(iter(options.get("rcpt_replies", {}).values()), options.get("data_reply"))
    assert reply.split()[0] in str(error)


def test_server_down_is_retryable():
    error = send_error(SmtpBackend("127.0.0.1", free_port(), security="none", timeout_s=2))
    assert not error.permanent and "cannot reach" in str(error)


def test_no_error_ever_shows_the_smtp_password():
    errors = []
    with smtp_server(tls="starttls", auth=(SMTP_USER, SMTP_PASSWORD),
                     rcpt_replies={BUYER: f"550 5.1.1 user unknown {SMTP_PASSWORD}"}) as server:
        good = SmtpBackend(server.host, server.port, username=SMTP_USER, password=SMTP_PASSWORD,
                           ssl_context=server.client_context)
        errors.append(send_error(good))  # the server echoes the password: scrubbed
        wrong = SmtpBackend(server.host, server.port, username=SMTP_USER, password=SMTP_PASSWORD + "x",
                            ssl_context=server.client_context)
        errors.append(send_error(wrong))
        errors.append(send_error(SmtpBackend(server.host, server.port, username=SMTP_USER,
                                             password=SMTP_PASSWORD)))  # untrusted certificate
    errors.append(send_error(SmtpBackend("127.0.0.1", free_port(), username=SMTP_USER,
                                         password=SMTP_PASSWORD)))
    assert errors[0].permanent and "***" in str(errors[0])
    for error in errors:
        assert SMTP_PASSWORD not in str(error) and SMTP_PASSWORD not in repr(error)


def test_unknown_security_mode_is_a_value_error():
    with pytest.raises(ValueError, match="starttls"):
        SmtpBackend("smtp.example.com", security="ssl")


# --- maildir --------------------------------------------------------------------------------

def test_maildir_writes_one_parseable_file_per_message_id(tmp_path):
    backend = MaildirBackend(tmp_path / "mail" / "out")
    first = backend.send(message())
    again = backend.send(message())  # a resend after a crash: same outbox key
    other = backend.send(message(kind="renewal", key="sub-1:renewal:1"))
    assert first == again != other
    files = sorted(p.name for p in (tmp_path / "mail" / "out").iterdir())
    assert files == sorted([Path(first).name, Path(other).name])
    assert all(name.endswith(".eml") for name in files)
    got = message_from_bytes(Path(first).read_bytes(), policy=policy.default)
    assert got["Message-ID"] == make_message_id("example.com", "sub-1:activation:0")
    assert sample_context("activation")["password"] in parts(got)[0]
    assert os.stat(first).st_mode & 0o077 == 0  # credentials inside: owner only


def test_maildir_failure_is_a_mail_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(MailError, match="cannot write"):
        MaildirBackend(blocker).send(message())


# --- issue 9: hostile buyer data -------------------------------------------------------------

def test_a_huge_display_name_is_cut_and_the_message_stays_within_line_limits():
    from iptvsync.mail.message import MAX_DISPLAY_NAME, build_message
    from iptvsync.mail.render import RenderedEmail

    rendered = RenderedEmail(subject="s", text="t", html="<p>h</p>")
    for name in ("José " * 4000, "M" * 20_000, "Maria\r\nBcc: x@example.com"):
        msg = build_message(rendered, to_addr="maria@example.com", to_name=name, from_addr="a@example.com",
                            message_id="<x@example.com>")
        assert len(msg["To"].addresses[0].display_name) <= MAX_DISPLAY_NAME
        assert max(len(line) for line in msg.as_bytes().splitlines()) <= 78
        assert "Bcc" not in msg or msg["Bcc"] is None


def test_a_quoted_local_part_is_accepted_and_a_broken_one_is_not():
    import pytest

    from iptvsync.mail.message import build_message
    from iptvsync.mail.render import RenderedEmail

    rendered = RenderedEmail(subject="s", text="t", html="<p>h</p>")
    msg = build_message(rendered, to_addr='"a b"@example.com', to_name="A", from_addr="a@example.com",
                        message_id="<x@example.com>")
    assert msg["To"].addresses[0].addr_spec == '"a b"@example.com'
    for bad in ('a b@example.com', '"a b@example.com', 'a@exa mple.com', "@example.com"):
        with pytest.raises(ValueError):
            build_message(rendered, to_addr=bad, to_name="A", from_addr="a@example.com", message_id="<x@example.com>")
