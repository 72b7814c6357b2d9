"""Blanking ``chave_unica`` in a postback body before it is stored or shown.

The key is blanked in the raw bytes, and then checked for in the decoded values too (a key
percent-encoded letter by letter or written as a JSON ``\\u`` escape decodes to the key): any
field still holding it is rewritten, so no stored or printed copy carries it.
"""

from __future__ import annotations

import codecs
import json
import re
from urllib.parse import quote, quote_plus, unquote_to_bytes

from ..errors import MalformedPostback
from .form import loads
from .postback import _CHARSET, _FORM, _FORM_TYPO, _SURROGATE, _form_fields, _lenient, parse_body


def redact(body: bytes, secret: str, content_type: str | None = None) -> bytes:
    """The raw body with every occurrence of the chave_unica value blanked.

    First the raw text, its JSON escapings (``\\/``, ``\\uXXXX``) and URL encodings of both,
    hence the copy inside a form's ``json`` field; the rest of the bytes stay as they came.
    Then the check that counts: the body is decoded as the receiver decodes it, and wherever a
    decoded value still holds the key (one letter percent-encoded, a ``\\u`` escape of one
    letter, lower-case hex…) that field is rewritten without it. Pass the configured key: a
    very short value would blank short substrings too.
    """
    return redact_stored(body, content_type, secret)[0]


def redact_stored(body: bytes, content_type: str | None, secret: str) -> tuple[bytes, str | None]:
    """``redact`` for the receiver: the body to store and its content type (the same one,
    except for a body only re-encoding could clean, stored as the form it decodes to)."""
    if not secret:
        return body, content_type
    body = _redact_variants(body, secret)
    if not _could_hide(body, content_type, secret) or not _leaks(body, content_type, secret):
        return body, content_type
    media_type = (content_type or "").split(";")[0].strip().lower()
    if body.lstrip()[:1] in (b"{", b"[") and media_type != "multipart/form-data":
        try:
            charset = (_CHARSET.search(content_type or "") or [None, "utf-8"])[1]
            cleaned = json.dumps(_scrub(loads(_lenient(body, charset)), secret)).encode()
            return cleaned, content_type
        except (ValueError, RecursionError):
            pass
    elif media_type in ("", _FORM, _FORM_TYPO):
        cleaned = b"&".join(_scrub_field(field, secret) for field in body.split(b"&"))
        if not _leaks(cleaned, content_type, secret):
            return cleaned, content_type
    from iptvsync.monetizze.form import build_form  # the last resort: the decoded fields, re-encoded

    payload = _scrub(parse_body(body, content_type), secret, encodable=True)
    return build_form(payload, json_field=False), _FORM


def _redact_variants(body: bytes, secret: str) -> bytes:
    escaped = {json.dumps(secret, ensure_ascii=ascii_only)[1:-1] for ascii_only in (True, False)}
    texts = {secret} | escaped | {text.replace("/", "\\/") for text in escaped}
    variants = set(texts)
    for text in texts:
        for encoded in (quote(text, safe=""), quote_plus(text, safe="")):
            for form in (encoded, encoded.replace("~", "%7E")):
                variants |= {form, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), form)}
    for variant in sorted(variants, key=len, reverse=True):
        body = body.replace(variant.encode(), b"")
    return body


def _could_hide(body: bytes, content_type: str | None, secret: str) -> bool:
    """False when no decoding of ``body`` can hold ``secret``: the fast path of every request.

    Percent escapes and backslash escapes (JSON's ``\\uXXXX`` among them) are undone twice over
    the whole body, in C (``unicode_escape``): a superset of what the parser decodes (a form
    field, then the JSON in the ``json`` field), so if the key is not in that it is nowhere.
    Anything this cannot vouch for (a non-ASCII body or key, multipart) goes to ``_leaks``.
    """
    if (not secret.isascii() or any(ch in secret for ch in "%+\\")
            or "multipart" in (content_type or "").lower() or not body.isascii()):
        return True
    text = body.decode("ascii").replace("+", " ")
    try:
        for _ in range(2):
            # JSON's "\\/" is "/" (PHP's json_encode writes every slash so)
            text = text.replace("\\/", "/")
            odd = "\\" in text  # else every backslash is one of the "\\x" written next, all known
            text = text.replace("%", "\\x")
            text = codecs.decode((_known_escapes_only(text) if odd else text).encode("latin-1"), "unicode_escape")
    except (UnicodeError, ValueError):
        return True
    return secret in text


#: what ``_known_escapes_only`` rewrites: an escaped backslash (only to step over it whole), an
#: octal escape above \377, a backslash before a letter that starts no escape. A known escape
#: (``\u``, ``\n``…) is left alone, not even matched.
_ODD_ESCAPE = re.compile(r"\\(\\|[4-7][0-7]{2}|[^0-7xuUN'\"abfnrtv\n\\])")


def _known_escapes_only(text: str) -> str:
    """``text`` written so that ``unicode_escape`` decodes it to the same characters without a
    ``DeprecationWarning`` (an error under ``-W error``, maybe in a newer Python): an escape the
    codec does not know (``\\d``, ``\\8``), which it keeps as written, gets its backslash doubled;
    an octal escape above ``\\377`` becomes the ``\\u`` escape of the character it stands for.
    Escapes the codec refuses (``\\x`` without two hex digits) stay, and still raise."""
    return _ODD_ESCAPE.sub(_known_escape, text)


def _known_escape(match: re.Match) -> str:
    sequence = match.group(1)
    if sequence == "\\":
        return match.group()
    if len(sequence) == 3:
        return f"\\u{int(sequence, 8):04x}"
    return "\\\\" + sequence


def _strings(value):
    """Every string in a decoded payload, keys included (iteratively: payloads may be deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _leaks(body: bytes, content_type: str | None, secret: str) -> bool:
    """Does the body, decoded as the receiver decodes it, still hold ``secret`` anywhere?"""
    try:
        payload = parse_body(body, content_type)
    except MalformedPostback:
        return False  # nothing can be read from it, the key neither
    texts = list(_strings(payload))
    media_type = (content_type or "").split(";")[0].strip().lower()
    if body.lstrip()[:1] not in (b"{", b"[") and media_type in ("", _FORM, _FORM_TYPO):
        # every field, also those the ``json`` copy hides from the payload
        texts += [text for field in _form_fields(body, "utf-8") for text in field]
    for text in texts:
        if secret in text:
            return True
        if text[:1] in ("{", "[") and "\\" in text:  # a JSON text in a field, with escapes
            try:
                if any(secret in inner for inner in _strings(loads(text))):
                    return True
            except (ValueError, RecursionError):
                pass
    return False


def _scrub(value, secret: str, encodable: bool = False):
    """``value`` without ``secret``; ``encodable``: its lone surrogates (a part in UTF-7, say)
    made U+FFFD too, for a body re-encoded as a form, which UTF-8 must be able to write."""
    if isinstance(value, str):
        value = value.replace(secret, "")
        return _SURROGATE.sub("\ufffd", value) if encodable else value
    if isinstance(value, dict):
        return {_scrub(k, secret, encodable): _scrub(v, secret, encodable) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secret, encodable) for v in value]
    return value


def _scrub_field(field: bytes, secret: str) -> bytes:
    """One ``name=value`` of a form, rewritten only when its decoded name or value holds ``secret``."""
    parts = field.split(b"=", 1)
    out = []
    for raw in parts:
        text = unquote_to_bytes(raw.replace(b"+", b" "))
        decoded = _lenient(text, "utf-8")
        inner = decoded
        if decoded[:1] in ("{", "[") and "\\" in decoded:
            try:
                inner = json.dumps(_scrub(loads(decoded), secret), separators=(",", ":"))
            except (ValueError, RecursionError):
                inner = decoded
        if secret in inner or inner != decoded:
            out.append(quote_plus(inner.replace(secret, "")).encode())
        else:
            out.append(raw)
    return b"=".join(out)
