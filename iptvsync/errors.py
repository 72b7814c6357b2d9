"""Typed errors raised by domain code; only the CLI turns them into messages and exit codes."""


class IptvsyncError(Exception):
    """Base of every error iptvsync raises on purpose."""


class ConfigError(IptvsyncError):
    """A config file, key or secret is wrong or missing (exit code 2)."""


class UsageError(IptvsyncError):
    """A command was asked for something that cannot be: no such row, an unknown product (exit code 2)."""


class LedgerError(IptvsyncError):
    """The ledger cannot be opened or written."""


class MalformedPostback(IptvsyncError):
    """A postback body that cannot be parsed at all."""


class PanelError(IptvsyncError):
    """A panel call failed.

    ``transient`` errors (timeouts, 5xx, connection refused) are retried with backoff;
    ``ambiguous`` ones (timeouts after sending, "already exists", non-JSON) mean the write may
    or may not have happened, so the caller re-reads before deciding. Neither flag means the
    panel refused for good (bad key, out of credits, invalid package): retrying won't help
    until an operator acts.
    """

    def __init__(self, message: str, *, transient: bool = False, ambiguous: bool = False,
                 status: str | None = None):
        super().__init__(message)
        self.transient = transient
        self.ambiguous = ambiguous
        self.status = status


class MailError(IptvsyncError):
    """Sending an email failed; ``permanent`` when the server rejected it for good (5xx)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class MonetizzeApiError(IptvsyncError):
    """Monetizze's API could not be read: network, HTTP status, not JSON, or an error reply."""
