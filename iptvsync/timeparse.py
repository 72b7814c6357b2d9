"""Human durations for options like ``--since 2d``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from .clock import now, parse_iso
from .errors import ConfigError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not match:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 30m, 12h, 2d, 1w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def since_to_datetime(text: str | None) -> datetime | None:
    """``2d`` → now − 2 days; an ISO date/time is taken as is (UTC)."""
    if not text:
        return None
    if re.fullmatch(r"\d+[smhdw]", text.strip()):
        return now() - parse_duration(text)
    try:
        return parse_iso(text if "T" in text or "+" in text else text + "T00:00:00Z")
    except ValueError:
        raise ConfigError(f"invalid --since {text!r}: use e.g. 2d or 2026-11-01") from None
