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


class NotifyError(IptvsyncError):
    """A WhatsApp gateway call failed.

    ``permanent``: refused for good (a number not on WhatsApp, a template that does not exist, a
    bad token): sending again will not help until someone acts. ``ambiguous``: the request left
    and no clear answer came back (read timeout, dropped connection, most 5xx), so the message
    may have been delivered. Neither flag: it certainly was not sent (connection refused, a
    rate-limit answer, a disconnected instance) and may be sent again after a backoff.
    ``gateway_wide``: the failure is the gateway's, not this message's (unreachable, credentials
    refused, session disconnected, rate limit): the other messages wait for the next run.
    ``disconnected``: the gateway says its WhatsApp session is not connected.
    """

    def __init__(self, message: str, *, permanent: bool = False, ambiguous: bool = False,
                 gateway_wide: bool = False, rate_limited: bool = False, disconnected: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.ambiguous = ambiguous
        self.gateway_wide = gateway_wide or rate_limited or disconnected
        self.rate_limited = rate_limited
        self.disconnected = disconnected
