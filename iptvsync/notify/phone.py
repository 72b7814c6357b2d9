"""Buyer phone numbers to E.164, with ``phonenumbers`` (Google's libphonenumber metadata).

Monetizze's ``comprador[telefone]`` is what the buyer typed: with or without the area code,
with or without +55, masks and spaces. A number without a country code is read as Brazilian
(``DEFAULT_REGION``). Only a number that can receive WhatsApp is kept: valid, and mobile (or
"fixed line or mobile", the type some countries cannot tell apart). Brazilian mobiles have
nine digits since 2016 (the leading 9, "nono dígito"); an old eight-digit mobile typed
without it (``11 8765-4321``) is not a valid Brazilian number any more, and is given its 9
when adding it makes a valid mobile: every gateway is then sent the 13-digit form, which the
gateways resolve to the account as WhatsApp registered it (docs/whatsapp.md).
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_REGION = "BR"


class Phone(NamedTuple):
    e164: str | None  # "+5511987654321", or None
    issue: str | None  # why there is none: "missing", "invalid: …", "not a mobile: …"


def normalize(raw: str | None, region: str = DEFAULT_REGION) -> Phone:
    """The E.164 form of a buyer's number, or why it has none."""
    import phonenumbers
    from phonenumbers import PhoneNumberType

    text = (raw or "").strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits or set(digits) == {"0"}:  # Monetizze's test postbacks send 00000000000
        return Phone(None, "missing")
    shown = _masked(digits)
    candidates = [text]
    if region == "BR" and not text.startswith("+"):
        local = digits[2:] if digits.startswith("55") and len(digits) in (12, 13) else digits
        local = local.lstrip("0")  # a trunk prefix: 0 11 9…
        if len(local) == 10 and local[2] in "6789":  # DDD + 8 digits of an old mobile: add the 9
            candidates.append(f"+55{local[:2]}9{local[2:]}")
        candidates.append(f"+55{local}")
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        kind = phonenumbers.number_type(number)
        if kind not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
            return Phone(None, f"not a mobile: {shown}")
        return Phone(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None)
    return Phone(None, f"invalid: {shown}")


def _masked(digits: str) -> str:
    """Enough of a number to recognise it in ``status`` without spelling it out."""
    return digits if len(digits) <= 4 else "…" + digits[-4:]


def digits_only(e164: str) -> str:
    """``+5511987654321`` -> ``5511987654321``: what the text gateways take."""
    return e164.lstrip("+")
