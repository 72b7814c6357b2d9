"""Wrap a rendered email into an RFC 5322 message: text and HTML alternatives, UTF-8.

The Message-ID comes from the outbox key (``make_message_id``), so a resend after a crash
carries the same Message-ID and receivers (and the maildir backend) can tell it is one email.
"""

from __future__ import annotations

import hashlib
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from iptvsync import clock
from iptvsync.mail.render import RenderedEmail

_MESSAGE_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")
_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")


def make_message_id(domain: str, key: str) -> str:
    """``<iptvsync.<hash of key>@domain>``: the same key always gives the same Message-ID.

    ``ValueError`` when ``domain`` is not a domain (an IDN is written in its ASCII form).
    """
    try:
        domain = domain.strip().lower().encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"not a mail domain: {domain!r}") from exc
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a mail domain: {domain!r}")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<iptvsync.{digest}@{domain}>"


def build_message(rendered: RenderedEmail, *, to_addr: str, to_name: str | None, from_addr: str,
                  message_id: str, reply_to: str | None = None) -> EmailMessage:
    """A multipart/alternative message dated by the clock; ``ValueError`` for a bad address."""
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"Message-ID must look like <id@domain>, got {message_id!r}")
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = from_addr
    msg["To"] = _recipient(to_addr, to_name)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    msg.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


#: A buyer name longer than this is cut (on a word boundary when there is one): Monetizze lets
#: a buyer type anything, and a 20,000-character name made a ``To:`` line no server accepts.
MAX_DISPLAY_NAME = 64
_QUOTED_LOCAL = re.compile(r'"((?:[^"\\\r\n]|\\[^\r\n])+)"')


def display_name(name: str | None) -> str:
    """The buyer's name for the ``To:`` header: one line, printable, at most ``MAX_DISPLAY_NAME``."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in (name or "")).split())
    if len(text) <= MAX_DISPLAY_NAME:
        return text
    cut = text[:MAX_DISPLAY_NAME - 1]
    if " " in cut[MAX_DISPLAY_NAME // 2:]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def _recipient(to_addr: str, to_name: str | None) -> Address:
    addr = to_addr.strip()
    if "@" not in addr:
        raise ValueError(f"not an email address: {to_addr!r}")
    username, domain = addr.rsplit("@", 1)
    quoted = _QUOTED_LOCAL.fullmatch(username)
    if quoted:  # RFC 5322 quoted local part, e.g. "a b"@example.com
        username = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif not username or any(ch.isspace() or ch in '<>,"' for ch in username):
        raise ValueError(f"not an email address: {to_addr!r}")
    if not domain or any(ch.isspace() or ch in '<>,"' for ch in domain):
        raise ValueError(f"not an email address: {to_addr!r}")
    return Address(display_name=display_name(to_name), username=username, domain=domain)
