"""Render a payload dict as the form body Monetizze posts (for `simulate` and tests).

Monetizze's servers are PHP: a postback body is ``http_build_query($payload)`` with default
arguments, plus a ``json`` field holding ``json_encode($payload)``. This module reproduces both
byte for byte for payloads decoded from JSON (dicts, lists, str, int, float, bool, None):

* nested keys in bracket form with the brackets percent-encoded (``venda%5Bcodigo%5D=...``),
  list items by index (``comissoes%5B0%5D%5Bnome%5D=...``);
* ``None`` and empty containers omitted; ``True``/``False`` as ``1``/``0``; floats like PHP with
  ``precision=14``;
* keys and values encoded like PHP ``urlencode()``: only ``A-Za-z0-9-_.`` stay as they are, space
  becomes ``+``, every other UTF-8 byte ``%XX`` (upper-case hex, ``~`` included);
* the ``json`` field escaped like ``json_encode()`` with default flags: compact, non-ASCII as
  ``\\uXXXX``, ``/`` as ``\\/``.
"""

import json

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def php_urlencode(text: str) -> str:
    """PHP ``urlencode()``: RFC 1738 style, space as ``+``."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in _SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def php_float(value: float, precision: int = 14) -> str:
    """A float as ``http_build_query()`` writes it (PHP ``precision=14``, ``php_gcvt``)."""
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign = "-" if value < 0 else ""
    mantissa, exponent = f"{abs(value):.{precision - 1}e}".split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    decpt = int(exponent) + 1  # value = 0.<digits> * 10**decpt
    if decpt < -3 or decpt > precision:
        exp = decpt - 1
        body = digits[0] + "." + (digits[1:] or "0")
        return f"{sign}{body}E{'-' if exp < 0 else '+'}{abs(exp)}"
    if decpt <= 0:
        return sign + "0." + "0" * (-decpt) + digits
    if len(digits) <= decpt:
        return sign + digits + "0" * (decpt - len(digits))
    return sign + digits[:decpt] + "." + digits[decpt:]


def php_scalar(value) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float):
        return php_float(value)
    return str(value)


def http_build_query(data: dict) -> str:
    """PHP ``http_build_query($data)`` for data decoded from JSON."""
    pairs = []

    def walk(value, key):
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            if value is not None:
                pairs.append(key + "=" + php_urlencode(php_scalar(value)))
            return
        for sub_key, sub_value in items:
            encoded = php_urlencode(str(sub_key))
            walk(sub_value, encoded if key is None else key + "%5B" + encoded + "%5D")

    walk(data, None)
    return "&".join(pairs)


def php_json_encode(value) -> str:
    """PHP ``json_encode($value)`` with default flags."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    # json.dumps never writes "/" outside strings and never escapes it inside them.
    return text.replace("/", "\\/")


def build_form(payload: dict, *, json_field: bool = True) -> bytes:
    """The form body for ``payload``.

    With ``json_field`` the ``json`` field holds the payload minus its own ``json`` key, in
    place of an existing ``json`` key (the fixtures carry a ``"{...}"`` placeholder) or appended
    at the end. Without it, any ``json`` key is dropped: the panel's test button sends no ``json``.
    """
    inner = {key: value for key, value in payload.items() if key != "json"}
    if not json_field:
        return http_build_query(inner).encode("ascii")
    encoded = php_json_encode(inner)
    if "json" in payload:
        data = {key: (encoded if key == "json" else value) for key, value in payload.items()}
    else:
        data = dict(payload, json=encoded)
    return http_build_query(data).encode("ascii")
