"""The one clock seam: every timestamp iptvsync writes comes from ``now()``."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def now() -> datetime:
    """Aware UTC now (freezegun-friendly)."""
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 UTC text as stored in the ledger, e.g. ``2026-11-20T17:37:57Z``."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())
