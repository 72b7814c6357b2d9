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


def _recipient(to_addr: str, to_name: str | None) -> Address:
    addr = to_addr.strip()
    if "@" not in addr or any(ch.isspace() or ch in "<>," for ch in addr):
        raise ValueError(f"not an email address: {to_addr!r}")
    name = " ".join((to_name or "").split())  # no line breaks smuggled into a header
    username, domain = addr.rsplit("@", 1)
    return Address(display_name=name, username=username, domain=domain)
