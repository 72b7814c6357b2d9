"""One email sent step by step, reporting each step of the SMTP conversation.

``mail test`` uses this to answer an operator's first question about a new SMTP account: did
the connection, TLS, login and each recipient work, and what did the server answer? The
password never appears in a step's detail.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from .. import clock
from ..config import Config
from .backends import MaildirBackend, _reply, quit_politely
from .message import make_message_id


@dataclass(frozen=True)
class Step:
    name: str  # connect, starttls, tls, auth, mail, rcpt, data, maildir
    ok: bool
    detail: str


def notice(cfg: Config, to_addr: str, subject: str, text: str) -> EmailMessage:
    """A plain-text message from the configured sender (tests, alerts)."""
    from_addr = cfg.email.from_addr
    domain = parseaddr(from_addr)[1].rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = make_message_id(domain, f"notice:{to_addr}:{clock.iso(clock.now())}:{subject}")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, charset="utf-8")
    return msg


def send_reporting(cfg: Config, msg: EmailMessage) -> list[Step]:
    """Send ``msg`` through the configured backend; the steps, the last one failed if any did."""
    e = cfg.email
    if e.backend != "smtp":
        try:
            where = MaildirBackend(cfg.resolve(e.maildir)).send(msg)
        except Exception as exc:  # MailError, or a bad Message-ID
            return [Step("maildir", False, str(exc))]
        return [Step("maildir", True, f"written to {where} (backend = maildir: nothing is sent)")]
    password = cfg.secrets.smtp_password
    steps: list[Step] = []

    def clean(text: str) -> str:
        return text.replace(password, "***") if password else text

    context = ssl.create_default_context(cafile=str(cfg.resolve(e.smtp_cafile)) if e.smtp_cafile else None)
    smtp = None
    step = "connect"
    try:
        if e.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(e.smtp_host, e.smtp_port, timeout=e.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(e.smtp_host, e.smtp_port, timeout=e.timeout_s)
        code, banner = smtp.ehlo()
        steps.append(Step("connect", True, f"{e.smtp_host}:{e.smtp_port}, EHLO {_reply(code, banner)[:60]}"))
        if e.smtp_security == "tls":
            steps.append(Step("tls", True, _tls(smtp)))
        elif e.smtp_security == "starttls":
            step = "starttls"
            if not smtp.has_extn("starttls"):
                steps.append(Step(step, False, 'not offered by the server: set smtp_security to "tls" or "none"'))
                return steps
            smtp.starttls(context=context)
            smtp.ehlo()
            steps.append(Step(step, True, _tls(smtp)))
        else:
            steps.append(Step("tls", True, 'none (smtp_security = "none": the password and emails travel in clear)'))
        if cfg.secrets.smtp_username:
            step = "auth"
            code, text = smtp.login(cfg.secrets.smtp_username, password)
            steps.append(Step(step, True, f"as {cfg.secrets.smtp_username}: {_reply(code, text)}"))
        else:
            steps.append(Step("auth", True, "skipped (no SMTP_USERNAME)"))
        sender, rcpt = parseaddr(msg["From"])[1], parseaddr(msg["To"])[1]
        for step, say, address, word in (("mail", smtp.mail, sender, "from"), ("rcpt", smtp.rcpt, rcpt, "to")):
            code, text = say(address)
            steps.append(Step(step, code < 400, f"{word} {address}: {_reply(code, text)}"))
            if code >= 400:
                return steps
        step = "data"
        code, text = smtp.data(msg.as_bytes())
        steps.append(Step(step, code < 400, f"accepted: {_reply(code, text)}" if code < 400 else _reply(code, text)))
    except smtplib.SMTPResponseException as exc:
        steps.append(Step(step, False, clean(_reply(exc.smtp_code, exc.smtp_error))))
    except (smtplib.SMTPException, OSError) as exc:
        steps.append(Step(step, False, clean(f"{type(exc).__name__}: {exc}")))
    finally:
        if smtp is not None:
            quit_politely(smtp)
    return steps


def _tls(smtp: smtplib.SMTP) -> str:
    sock = smtp.sock
    if not isinstance(sock, ssl.SSLSocket):
        return "no TLS"
    cipher = sock.cipher()
    return f"{sock.version()} {cipher[0] if cipher else ''}, certificate verified".strip()
