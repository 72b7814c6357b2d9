"""Human durations for options like ``--since 2d``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .clock import now
from .errors import ConfigError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 30m, 12h, 2d, 1w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def since_to_datetime(text: str | None) -> datetime | None:
    """``2d`` → now − 2 days; an ISO date/time is taken as is (UTC). An empty one is an error:
    ``--since "$VAR"`` with the variable unset must not quietly mean "everything"."""
    if text is None:
        return None
    if not text.strip():
        raise ConfigError("--since is empty: use e.g. 2d or 2026-11-01 (or leave the option out)")
    if re.fullmatch(r"\d+[smhdw]", text.strip()):
        return now() - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"invalid --since {text!r}: use e.g. 2d or 2026-11-01") from None
    # no zone given: UTC, never the server's local zone (what astimezone() would assume)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
