"""Monetizze's form body, both ways: the decoding fast path and the PHP encoder.

Decoding. A Monetizze form body repeats the payload in a ``json`` field, and for such a body
``postback.parse_body`` returns that JSON object (the bracket fields only fill top-level keys
it lacks). Decoding the one field instead of all ~130 names and values is ~3x cheaper, and
parsing is most of the receiver's and the apply stage's CPU. ``json_field_payload`` answers
only when the result is provably the same as the full decoding; otherwise None.

Encoding (for ``simulate``, reconcile and tests). Monetizze's servers are PHP: a postback body
is ``http_build_query($payload)`` with default arguments, plus a ``json`` field holding
``json_encode($payload)``. ``build_form`` reproduces both byte for byte for payloads decoded
from JSON (dicts, lists, str, int, float, bool, None):

* nested keys in bracket form with the brackets percent-encoded (``venda%5Bcodigo%5D=...``),
  list items by index (``comissoes%5B0%5D%5Bnome%5D=...``);
* ``None`` and empty containers omitted; ``True``/``False`` as ``1``/``0``; floats like PHP with
  ``precision=14``;
* keys and values encoded like PHP ``urlencode()``: only ``A-Za-z0-9-_.`` stay as they are, space
  becomes ``+``, every other UTF-8 byte ``%XX`` (upper-case hex, ``~`` included);
* the ``json`` field escaped like ``json_encode()`` with default flags: compact, non-ASCII as
  ``\\uXXXX``, ``/`` as ``\\/``.
"""

from __future__ import annotations

import codecs
import json
import re
from urllib.parse import unquote_plus

BRACKET_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
#: A run of consecutive percent-escapes of bytes >= 0x80 (the only ones that can be bad UTF-8).
_HIGH_ESCAPES = re.compile(rb"%[89A-Fa-f][0-9A-Fa-f](?:%[89A-Fa-f][0-9A-Fa-f])*")


#: JSON integers longer than this stay text (``HugeNumber``): Python refuses to convert an int of
#: over 4,300 digits (``sys.get_int_max_str_digits``), and any beyond 10**18 is read as absent
MAX_INT_DIGITS = 4000


class HugeNumber(str):
    """A JSON integer too long to convert, as its text (read as absent, like any unreadable number)."""


def _parse_int(text: str) -> int | str:
    return int(text) if len(text) <= MAX_INT_DIGITS else HugeNumber(text)


def loads(text: str | bytes):
    """``json.loads`` that never raises for a number: an integer of over ``MAX_INT_DIGITS``
    digits is kept as its text (``HugeNumber``); a huge float is already ``inf``."""
    return json.loads(text, parse_int=_parse_int)


_FIELD_NAMES: dict[str, tuple[str, str]] = {}  # raw name -> (name, top-level key); Monetizze's repeat


def _field_name(raw: str) -> tuple[str, str]:
    """A raw form field name decoded (as ``parse_qsl`` does) and its top-level ``$_POST`` key."""
    known = _FIELD_NAMES.get(raw)
    if known is None:
        name = unquote_plus(raw)
        match = BRACKET_KEY.match(name)
        known = name, match.group(1) if match else name
        if len(raw) <= 200 and len(_FIELD_NAMES) < 4096:  # bounded, whatever the bodies hold
            _FIELD_NAMES[raw] = known
    return known


def _unquote_plus(text: str) -> str:
    """``unquote_plus(text)`` for ASCII text, decoded in C: each ``%XX`` becomes ``\\xXX`` for
    the ``unicode_escape`` codec, whose bytes are then read as UTF-8. Exact as long as the text
    has no backslash of its own (urlencoded text has none); anything odd (a ``%`` without two
    hex digits, bytes that are not UTF-8) goes to ``unquote_plus``."""
    if "\\" in text:
        return unquote_plus(text)
    try:
        escaped = text.replace("+", " ").replace("%", "\\x").encode("ascii")
        return codecs.decode(escaped, "unicode_escape").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return unquote_plus(text)


def json_field_payload(body: bytes) -> dict | None:
    """The payload ``parse_body`` would return for a UTF-8 form body, when it is exactly the ``json`` field's object.

    That holds for an ASCII, UTF-8 form body (``parse_body`` reads it with ``parse_qsl``,
    strict UTF-8) with exactly one field named ``json`` (no ``json[...]``), holding a JSON
    object that already has every other field's top-level key (``setdefault`` adds nothing).
    Strict decoding fails only on a run of high-byte escapes that is not UTF-8 (every other
    byte is ASCII and ends a sequence), so checking those runs stands in for decoding every
    name and value. None means "not provably the same: use ``parse``".
    """
    if not body.isascii():
        return None
    if body.lstrip()[:1] in (b"{", b"["):
        return None  # parse_body reads it as JSON
    for run in _HIGH_ESCAPES.findall(body):
        try:
            bytes.fromhex(run.replace(b"%", b"").decode("ascii")).decode("utf-8")
        except ValueError:
            return None  # parse rejects the body: let it say so
    json_text, tops = None, set()
    for field in body.decode("ascii").split("&"):
        if not field:
            continue
        raw_name, _, raw_value = field.partition("=")
        name, top = _field_name(raw_name)
        if top == "json":
            if json_text is not None or name != "json":
                return None
            json_text = raw_value
        else:
            tops.add(top)
    if json_text is None:
        return None
    try:
        payload = loads(_unquote_plus(json_text))
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or not tops <= payload.keys():
        return None
    return payload


# --- encoding: PHP's http_build_query and json_encode ---



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
