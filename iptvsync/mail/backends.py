"""Where finished messages go: ``.eml`` files on disk (maildir) or an SMTP server.

A failed send raises ``MailError``; ``permanent`` is set when the server refused this
recipient or this message for good (5xx); everything else (server down, timeouts, 4xx, a
failed login) is worth retrying once the server or the config is fixed, so the mail is
never dropped. The SMTP password never appears in an error message.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path

from iptvsync.errors import MailError
from iptvsync.fsutil import write_atomically

SECURITY_MODES = ("starttls", "tls", "none")
_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._@-]")


class MaildirBackend:
    """Writes each message to ``<path>/<Message-ID>.eml``; a resend overwrites the same file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def send(self, msg: EmailMessage) -> str:
        message_id = (msg["Message-ID"] or "").strip().strip("<>")
        if not message_id:
            raise ValueError("message has no Message-ID")
        target = self.path / (_UNSAFE_IN_FILE_NAME.sub("_", message_id) + ".eml")
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)  # emails carry passwords
            write_atomically(target, msg.as_bytes(policy=policy.default))
        except OSError as exc:
            raise MailError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return str(target)


def quit_politely(smtp: smtplib.SMTP) -> None:
    """QUIT, or just close the socket when the server is already gone."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


class SmtpBackend:
    """Sends through an SMTP server: ``starttls`` (port 587), ``tls`` (465) or ``none``."""

    def __init__(self, host: str, port: int = 587, security: str = "starttls",
                 username: str | None = None, password: str | None = None, timeout_s: float = 20,
                 ssl_context: ssl.SSLContext | None = None):
        if security not in SECURITY_MODES:
            raise ValueError(f"smtp security must be one of {', '.join(SECURITY_MODES)}, got {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpBackend({self.host!r}, {self.port}, security={self.security!r})"

    def send(self, msg: EmailMessage) -> str:
        """Deliver ``msg``; return the server's answer to DATA (often carries a queue id)."""
        with self._session() as smtp:
            try:
                smtp.send_message(msg)
            except smtplib.SMTPRecipientsRefused as exc:
                replies = exc.recipients.values()
                details = "; ".join(f"{rcpt}: {_reply(*reply)}" for rcpt, reply in exc.recipients.items())
                raise self._error(f"SMTP server refused the recipient ({details})",
                                  permanent=all(code >= 500 for code, _ in replies)) from exc
            except smtplib.SMTPSenderRefused as exc:
                raise self._error(f"SMTP server refused the sender {exc.sender}: "
                                  f"{_reply(exc.smtp_code, exc.smtp_error)}",
                                  permanent=exc.smtp_code >= 500) from exc
            except smtplib.SMTPDataError as exc:
                raise self._error(f"SMTP server refused the message: {_reply(exc.smtp_code, exc.smtp_error)}",
                                  permanent=exc.smtp_code >= 500) from exc
            return _reply(*smtp.data_reply)

    def check(self) -> None:
        """Connect, say EHLO, upgrade to TLS and log in as configured, then quit."""
        with self._session():
            pass

    @contextmanager
    def _session(self) -> Iterator[_RecordingSMTP | _RecordingSMTP_SSL]:
        """One connection; any failure inside comes out as ``MailError``."""
        smtp = None
        try:
            smtp = self._connect()
            yield smtp
        except MailError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise self._translate(exc) from exc
        finally:
            if smtp is not None:
                quit_politely(smtp)

    def _connect(self) -> _RecordingSMTP | _RecordingSMTP_SSL:
        if self.security == "tls":
            smtp = _RecordingSMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._context())
        else:
            smtp = _RecordingSMTP(self.host, self.port, timeout=self.timeout_s)
        try:
            if self.security == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise self._error(f"SMTP server {self.where} does not offer STARTTLS; "
                                      'set smtp_security to "tls" or "none"')
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _translate(self, exc: smtplib.SMTPException | OSError) -> MailError:
        where = self.where
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return self._error(f"SMTP login as {self.username!r} on {where} failed: "
                               f"{_reply(exc.smtp_code, exc.smtp_error)}; "
                               "check SMTP_USERNAME and SMTP_PASSWORD")
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._error(f"SMTP server {where} answered {_reply(exc.smtp_code, exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPException):
            return self._error(f"SMTP session with {where} failed: {exc}")
        if isinstance(exc, ssl.SSLError):
            return self._error(f"TLS with SMTP server {where} failed: {exc}")
        if isinstance(exc, TimeoutError):
            return self._error(f"SMTP server {where} did not answer within {self.timeout_s}s")
        return self._error(f"cannot reach SMTP server {where}: {exc.strerror or exc}")

    def _error(self, message: str, *, permanent: bool = False) -> MailError:
        if self._password:
            message = message.replace(self._password, "***")
        return MailError(message, permanent=permanent)

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


class _DataReplyMixin:
    """Keep the server's answer to DATA, which ``smtplib.sendmail`` throws away."""

    data_reply: tuple[int, bytes] = (0, b"")

    def data(self, msg):
        self.data_reply = super().data(msg)
        return self.data_reply


class _RecordingSMTP(_DataReplyMixin, smtplib.SMTP):
    pass


class _RecordingSMTP_SSL(_DataReplyMixin, smtplib.SMTP_SSL):  # noqa: N801
    pass


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()
