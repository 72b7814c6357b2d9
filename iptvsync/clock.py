"""The one clock seam: every timestamp iptvsync writes comes from ``now()``."""

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def now() -> datetime:
    """Aware UTC now (freezegun-friendly)."""
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    """ISO-8601 UTC text as stored in the ledger, e.g. ``2026-11-20T17:37:57Z``."""
    # whole seconds are all the text holds: so a moment read from the clock (now()) hits the
    # cache within its second too, instead of filling it with microseconds
    return None if dt is None else _iso(dt.replace(microsecond=0) if dt.microsecond else dt)


@lru_cache(maxsize=256)
def _iso(dt: datetime) -> str:
    # remembered: a stage passes one ``now`` to every row it touches, so applying a postback
    # asks for the same moment's text about ten times (a hash lookup instead of a strftime)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def human(value: datetime | int | str | None, *, same_day_as: datetime | int | str | None = None) -> str:
    """What an operator reads: São Paulo time with its UTC offset, e.g. ``2027-01-30 12:00 -03``.

    Takes an aware datetime, unix seconds or ISO-8601 UTC text. With ``same_day_as`` (and the
    same local date) only the time is shown: ``15:00 -03``.
    """
    local = _local(value)
    if local is None:
        return ""
    offset = local.strftime("%z")  # -0300
    zone = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    other = _local(same_day_as)
    if other is not None and other.date() == local.date():
        return f"{local:%H:%M} {zone}"
    return f"{local:%Y-%m-%d %H:%M} {zone}"


def _local(value: datetime | int | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = parse_iso(value)
    elif isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(SAO_PAULO)
