"""The one interface every panel family implements, and the values that cross it.

The engine (``iptvsync.engine``) decides *what* a line should look like (a ``LineSpec``
computed from the ledger); an adapter only knows *how* to read and write one line on one
panel family. Adapters never decide policy, never touch the ledger and never retry across
runs: they raise ``PanelError`` with ``transient``/``ambiguous`` set and the engine decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Capabilities:
    """What a panel family can and cannot do; the engine, config and doctor ask these, never a kind."""

    #: Talks to a real panel (False: the dry-run family, which changes nothing real).
    real: bool = True
    #: Needs ``url`` in ``[panels.<name>]``.
    needs_url: bool = True
    #: A real panel that cannot work without ``PANEL_<NAME>_API_KEY`` (False: the key is
    #: optional, e.g. an ``api.php`` open to this host's IP without ``api_pass``).
    needs_api_key: bool = True
    #: The panel, not iptvsync, decides the expiry: one ``update`` buys one package period, so
    #: a product on such a panel needs ``package``, and the engine extends only while short.
    extends_by_package: bool = False
    #: The panel may choose the line's username and password (kept as the ones that work).
    chooses_credentials: bool = False
    #: ``health()`` reports the API user's credits.
    has_credits: bool = False
    #: ``health()`` reports the API user's timezone (informational: expiries are sent as
    #: ``@<unix>``, which no timezone shifts).
    reports_timezone: bool = False
    #: Lines log in through ``player_api.php`` on the panel's buyer-facing server (``links.server``).
    has_player_api: bool = False
    #: ``lines()`` yields every line on the panel (``subs import`` reads a running shop's lines).
    lists_lines: bool = False


@dataclass(frozen=True)
class LineSpec:
    """What the ledger wants the line to be. Absolute values only: never "add 30 days"."""

    username: str
    password: str = field(repr=False)  # never in logs or tracebacks
    expires_at: int  # unix seconds, UTC
    enabled: bool
    max_connections: int = 1
    bouquets: tuple[int, ...] = ()
    package: int | None = None  # xui-reseller only: the package that pays one period
    outputs: tuple[str, ...] = ()  # stream formats ("m3u8", "ts", "rtmp"); () = all the panel offers
    notes: str = ""  # written to admin_notes / reseller_notes, e.g. "iptvsync sub 12"


@dataclass(frozen=True)
class Line:
    """What the panel says the line is, read back from it."""

    line_id: str | None
    username: str
    password: str = field(repr=False)  # never in logs or tracebacks
    expires_at: int | None  # None = never expires
    enabled: bool
    max_connections: int | None = None
    bouquets: tuple[int, ...] | None = None  # None = the panel did not say
    is_trial: bool = False
    banned: bool = False  # admin_enabled=0: an operator's ban; iptvsync never lifts it
    outputs: tuple[str, ...] | None = None  # allowed stream formats; None = the panel did not say
    raw: dict = field(default_factory=dict, repr=False, compare=False)  # redacted


class Panel(Protocol):
    """One panel. ``name`` is the config section name (``[panels.<name>]``)."""

    name: str
    kind: str
    caps: Capabilities

    def get(self, username: str, password: str, line_id: str | None = None) -> Line | None:
        """The line with this username (and password), or None when the panel has none."""

    def create(self, spec: LineSpec) -> Line:
        """Create the line. Raises PanelError(ambiguous=True) on "already exists"/timeouts."""

    def update(self, line: Line, spec: LineSpec) -> Line:
        """Make ``line`` match ``spec`` (expiry, enabled, connections, bouquets), return it re-read.

        For ``caps.extends_by_package`` panels one call buys at most one package period.
        """

    # Only on ``caps.lists_lines`` panels:
    # def lines(self) -> Iterator[Line]:
    #     """Every line on the panel (bouquets unknown), page by page."""

    # Only on ``caps.extends_by_package`` panels:
    # def shortfall_slack_s(self, spec: LineSpec) -> int:
    #     """How far the line's expiry may fall short of the spec's without buying a package."""


    def health(self) -> dict:
        """Cheap authenticated call; returns facts worth showing (e.g. reseller credits)."""
