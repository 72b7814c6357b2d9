"""Monetizze postback bodies: decoding, classification, the dedupe key and redaction.

Pure and deterministic: the receiver stores the raw body (after ``redact``), its writer keeps
what ``parse`` makes of those bytes (``facts_json``) while the row is pending, and the engine
reads that, or parses the body again when it is missing or was made by another parser. Odd
optional fields never raise: an unclassifiable postback is still stored and shown, never
dropped. Monetizze posts a PHP bracket-key form plus a ``json`` field holding the whole
payload (JSON bodies may also arrive); form scalars are all strings while the ``json`` copy
has int codes, so every reader accepts both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.parser import BytesParser
from functools import lru_cache
from urllib.parse import parse_qsl

from iptvsync.clock import SAO_PAULO, iso
from iptvsync.errors import MalformedPostback
from iptvsync.monetizze.form import BRACKET_KEY as _BRACKET_KEY
from iptvsync.monetizze.form import json_field_payload
from iptvsync.monetizze.form import loads as _loads

#: the kind of an event that is not a subscription payment (stored, settled, never applied)
NOT_PAYMENT = "ignored"
#: the kind of a postback whose event no rule could read
UNCLASSIFIED = "unclassified"
#: the kind of an event outside ``EVENT_KINDS`` (105 "Recuperação Parcelada - Ativa", say)
#: whose ``venda[status]`` is Finalizada/Completa with a payment date: its charge was paid
SALE_PAID = "sale_paid"
EVENT_KINDS: dict[int, str] = {
    1: "waiting", 104: "waiting", 2: "approved", 6: "complete", 3: "cancelled", 4: "refunded",
    5: "blocked", 101: "sub_active", 102: "sub_overdue", 103: "sub_cancelled",
}

# venda[status] strings (compared after _fold) to their venda[codigo_status] codes.
# "Abandono de Checkout" has no status code: it is event 7, ignored like the event.
SALE_STATUS_EVENTS: dict[str, int] = {
    "aguardando pagamento": 1, "finalizada": 2, "cancelada": 3, "devolvida": 4, "bloqueada": 5,
    "completa": 6, "abandono de checkout": 7,
}

PERIOD_DAYS: dict[str, int] = {
    "semanal": 7, "mensal": 30, "bimestral": 60, "trimestral": 90, "semestral": 180, "anual": 365,
}
#: plano[periodicidade] in calendar months (Semanal has none: 7 days)
PERIOD_MONTHS: dict[str, int] = {"mensal": 1, "bimestral": 2, "trimestral": 3, "semestral": 6, "anual": 12}
#: venda[status] texts (folded) that say the sale is paid (exemplo.php:292-299)
PAID_SALE_STATUSES = frozenset({"finalizada", "completa"})

TEST_PRODUCT_NAME = "x-wing"  # the panel's "test" button posts a sale of it (and no `json`)

# Left out of the payload hash: the account key (a secret, and the same on every postback),
# the recipient role (one event reaches producer and affiliates alike) and `json` (a copy).
_UNHASHED_KEYS = frozenset({"chave_unica", "tipoPostback", "json"})

_FORM = "application/x-www-form-urlencoded"
_FORM_TYPO = "application/x-www-form-urlencode"  # what a Monetizze answer says it sends
_BRACKET_PART = re.compile(r"\[([^\[\]]*)\]")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
_MAX_FORM_DEPTH = 64
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTEGER = re.compile(r"[+-]?\d{1,18}")
_INT_LIMIT = 10**18  # the same bound for JSON numbers: a wider one would not fit an SQLite INTEGER
# What no store, log or mail can encode: a lone surrogate, from a JSON "\ud800" escape or a body
# in UTF-7 or unicode_escape. In a derived text it becomes U+FFFD; the raw bytes stay as they came.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: the longest code or address taken as such (Monetizze's codes are digits, e-mails <= 254)
MAX_CODE_CHARS = 254
#: the Postback fields that name a sale, a buyer or a product, and where Monetizze sends each
IDENTITY_FIELDS = {"sale_code": "venda.codigo", "subscription_code": "assinatura.codigo",
                   "product_code": "produto.codigo", "plan_code": "plano.codigo",
                   "plan_ref": "plano.referencia", "buyer_email": "comprador.email"}
# ``_could_hide`` runs ``unicode_escape`` over bodies whose backslashes are JSON's ("\/"), not
# Python's: the codec keeps such a pair as it is, and warns. That warning says nothing here.
warnings.filterwarnings("ignore", message="invalid escape sequence", category=DeprecationWarning,
                        module=r"iptvsync\.monetizze\.postback")


class UnsupportedContentType(MalformedPostback):
    """The body's content type is neither form-encoded nor JSON (the receiver answers 415)."""


@dataclass(frozen=True)
class LineItem:
    """One item of a multi-item sale (``venda_item_order_bump[]`` or ``produtos[]``)."""

    product_code: str
    name: str | None
    main: bool  # principal = "1": the sale's main product, already in produto[…]
    amount: str | None


@dataclass(frozen=True)
class Postback:
    """What iptvsync needs from one postback; every field but the classification is optional."""

    event: int | None
    event_source: str
    kind: str
    sale_code: str | None
    subscription_code: str | None
    parcela: int | None
    subscription_status: str | None
    product_code: str | None
    product_key: str | None
    product_name: str | None
    plan_code: str | None
    plan_ref: str | None
    periodicity: str | None
    period_days: int | None
    buyer_name: str | None
    buyer_email: str | None
    started_at: str | None
    paid_at: str | None
    amount: str | None
    payment_method: str | None
    recipient_role: int | None
    is_test: bool
    chave_unica: str | None
    dedupe_key: str
    sale_status: str | None = None  # venda[status] as sent
    items: tuple[LineItem, ...] = ()  # order bumps and produtos[], the main item included
    period_months: int | None = None  # plano[periodicidade] in calendar months
    test_reason: str | None = None  # why is_test (which markers matched)
    line_item: str | None = None  # set by the engine: this is the extra item <product code>
    codigo_venda: str | None = None  # the top-level sale code as sent (``sale_code`` prefers venda[codigo])

    @property
    def sale_codes_differ(self) -> bool:
        """venda[codigo] and codigo_venda both sent and different (PR #39's composite sample)."""
        return bool(self.codigo_venda and self.sale_code and self.codigo_venda != self.sale_code)
    buyer_phone: str | None = None  # comprador[telefone] as typed (WhatsApp, issue 21)

    @property
    def sale_paid(self) -> bool:
        """venda[status] Finalizada or Completa: evidence that this charge was paid."""
        return _fold(self.sale_status or "") in PAID_SALE_STATUSES

    @property
    def sale_completed(self) -> bool:
        """venda[status] Completa: paid, and past the guarantee (exemplo.php:292-299)."""
        return _fold(self.sale_status or "") == "completa"


# --- decoding -------------------------------------------------------------------------------

def parse_body(body: bytes, content_type: str | None) -> dict:
    """Decode a postback body into the nested payload dict.

    Form bodies: PHP bracket keys become nested dicts, and dicts keyed 0..n-1 become lists
    (the shape ``json.loads`` gives). A ``json`` field holding a JSON object is the complete
    payload and wins; top-level form fields it lacks are kept. ``multipart/form-data`` is read
    the same way. JSON bodies must hold an object. A body without a content type, or labelled
    as a form, is read as JSON when it starts like JSON.

    Text that is not in the declared charset (or in UTF-8, when none is declared) is read as
    Latin-1: an authenticated postback is stored whatever its encoding, and its raw bytes kept.
    """
    if not body.strip():
        raise MalformedPostback("empty body")
    media_type = (content_type or "").split(";")[0].strip().lower() or _FORM
    if media_type == _FORM_TYPO:
        media_type = _FORM
    if media_type == _FORM and body.lstrip()[:1] in (b"{", b"["):
        media_type = "application/json"  # unlabelled or mislabelled: no PHP form starts so
    charset_match = _CHARSET.search(content_type or "")
    charset = charset_match.group(1) if charset_match else "utf-8"
    if media_type == "application/json" or media_type.endswith("+json"):
        return _decode_json(body, charset)
    if media_type == _FORM:
        fast = json_field_payload(body) if charset.lower() in ("utf-8", "utf8") else None
        if fast is not None:
            return fast
        if b"=" not in body:
            raise MalformedPostback("form body has no fields")
        return _payload_from_fields(_form_fields(body, charset))
    if media_type == "multipart/form-data":
        return _payload_from_fields(_multipart_fields(body, content_type or ""))
    raise UnsupportedContentType(f"unsupported content type {media_type!r}")


def _lenient(data: bytes, charset: str) -> str:
    """``data`` in ``charset``; Latin-1 (every byte is a character) when it is not."""
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


def _decode_json(body: bytes, charset: str) -> dict:
    try:
        payload = _loads(_lenient(body, charset).lstrip("\ufeff"))
    except (ValueError, RecursionError) as exc:
        raise MalformedPostback(f"invalid JSON body: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedPostback(f"JSON body is a {type(payload).__name__}, not an object")
    return payload


def _form_fields(body: bytes, charset: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode(charset), keep_blank_values=True, encoding=charset, errors="strict")
    except (UnicodeDecodeError, LookupError):
        # e.g. ``Jos%E9``: Latin-1 escapes in a body that declares no charset
        return parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    except ValueError as exc:
        raise MalformedPostback(f"undecodable form body: {exc}") from exc


def _multipart_fields(body: bytes, content_type: str) -> list[tuple[str, str]]:
    if "\n" in content_type or "\r" in content_type:
        raise MalformedPostback("bad multipart content type")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("utf-8", "replace")
    fields = []  # no usable boundary means no parts, and "no fields" below
    try:
        message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            if part.is_multipart():
                continue  # form fields are flat; nested parts (1,000 deep, say) are no field
            name = part.get_param("name", header="content-disposition")
            if name is not None:
                data = part.get_payload(decode=True) or b""
                fields.append((str(name), _lenient(data, part.get_content_charset() or "utf-8")))
    # The email package is lenient by design, but odd headers still surface as these.
    except (ValueError, LookupError, RecursionError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise MalformedPostback(f"undecodable multipart body: {type(exc).__name__}") from exc
    return fields


def _payload_from_fields(fields: list[tuple[str, str]]) -> dict:
    if not fields:
        raise MalformedPostback("form body has no fields")
    form = _nest(fields)
    try:
        payload = _loads(form["json"]) if isinstance(form.get("json"), str) else None
    except (ValueError, RecursionError):
        payload = None  # a broken copy: the bracket fields are still the payload
    if not isinstance(payload, dict):
        return form
    for key, value in form.items():
        if key != "json":
            payload.setdefault(key, value)
    return payload


def _nest(fields: list[tuple[str, str]]) -> dict:
    """PHP's $_POST: ``a[b][0]=x`` -> ``{"a": {"b": ["x"]}}``; later fields win, like PHP."""
    root: dict = {}
    for key, value in fields:
        match = _BRACKET_KEY.match(key)
        path = [match.group(1), *_BRACKET_PART.findall(match.group(2))] if match else [key]
        if len(path) > _MAX_FORM_DEPTH:
            continue  # PHP drops these too (max_input_nesting_level)
        node = root
        for part in path[:-1]:
            part = part if part else str(len(node))
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1] if path[-1] else str(len(node))] = value
    # The top level stays a dict (``0=a`` is a field named "0", not a list).
    return {key: _lists_from_index_dicts(value) for key, value in root.items()}


def _lists_from_index_dicts(node):
    if not isinstance(node, dict):
        return node
    items = {key: _lists_from_index_dicts(value) for key, value in node.items()}
    if items and list(items) == [str(index) for index in range(len(items))]:
        return list(items.values())
    return items


# --- extraction -----------------------------------------------------------------------------

def extract(payload: dict) -> Postback:
    """Read a decoded payload. Never raises: absent or odd fields become None."""
    if not isinstance(payload, dict):
        payload = {}
    sale = _block(payload, "venda")
    subscription = _block(payload, "assinatura")
    product = _block(payload, "produto")
    plan = _block(payload, "plano")
    buyer = _block(payload, "comprador")

    event, event_source = _classify(payload, sale)
    kind = UNCLASSIFIED if event is None else EVENT_KINDS.get(event, NOT_PAYMENT)
    if kind == NOT_PAYMENT and _fold(_text(sale.get("status")) or "") in PAID_SALE_STATUSES \
            and _sao_paulo_to_utc(sale.get("dataFinalizada")):
        kind = SALE_PAID  # payment is read from the sale, whatever the event (docs/process.md)
    # venda[codigo] is "Código da transação" in Monetizze's own receiver (exemplo.php); the
    # top-level codigo_venda is only in an unmerged example (PR #39), where it differs: the
    # first identifies the charge, both are kept, and apply audits a difference.
    codigo_venda = _text(payload.get("codigo_venda"))
    sale_code = _text(sale.get("codigo")) or codigo_venda
    parcela = _int(subscription.get("parcela"))
    periodicity = _text(plan.get("periodicidade"))
    product_name = _text(product.get("nome"))
    email = _text(buyer.get("email"))

    if sale_code and event is not None:
        dedupe_key = f"{sale_code}:{event}:{'' if parcela is None else parcela}"
        if len(dedupe_key) > MAX_CODE_CHARS:  # no real sale code is that long: a bounded key
            dedupe_key = "long:" + hashlib.sha256(dedupe_key.encode()).hexdigest()
    else:  # abandoned checkout or unreadable: only an identical resend is a duplicate
        hashed = {key: value for key, value in payload.items() if key not in _UNHASHED_KEYS}
        dedupe_key = "nosale:" + hashlib.sha256(_canonical(hashed).encode()).hexdigest()
    test_reason = _test_markers(product_name, sale_code, email, _text(product.get("codigo")), event)
    is_test = test_reason is not None
    if is_test:  # the sample's sale code must never shadow a real sale's key
        dedupe_key = "test:" + dedupe_key

    return Postback(
        event=event,
        event_source=event_source,
        kind=kind,
        sale_code=sale_code,
        subscription_code=_text(subscription.get("codigo")),
        parcela=parcela,
        subscription_status=_text(subscription.get("status")),
        product_code=_text(product.get("codigo")),
        product_key=_text(product.get("chave")),
        product_name=product_name,
        plan_code=_text(plan.get("codigo")),
        plan_ref=_text(plan.get("referencia")),
        periodicity=periodicity,
        period_days=PERIOD_DAYS.get(_fold(periodicity)) if periodicity else None,
        buyer_name=_text(buyer.get("nome")),
        buyer_email=email.lower() if email else None,
        started_at=_sao_paulo_to_utc(sale.get("dataInicio")),
        paid_at=_sao_paulo_to_utc(sale.get("dataFinalizada")),
        amount=_text(sale.get("valor")),
        payment_method=_text(sale.get("formaPagamento")),
        recipient_role=_int(_block(payload, "tipoPostback").get("codigo")),
        # Only the documented test-button signal: a missing `json` field alone is also what a
        # JSON-mode body looks like, and a false "test" would withhold a paid line.
        is_test=is_test,
        chave_unica=_text(payload.get("chave_unica")),
        dedupe_key=dedupe_key,
        sale_status=_text(sale.get("status")),
        items=_items(payload),
        period_months=PERIOD_MONTHS.get(_fold(periodicity)) if periodicity else None,
        test_reason=test_reason,
        codigo_venda=codigo_venda,
        buyer_phone=_text(buyer.get("telefone")),
    )


def _test_markers(product_name: str | None, sale_code: str | None, email: str | None,
                  product_code: str | None, event: int | None) -> str | None:
    """Why this looks like the dashboard's test button, or None.

    The only documented marker is the sample product "X-Wing" (ExemploPOSTCallback README.md:13).
    The test request also "lacks many fields" (issue #28): a classified postback without a real sale code
    (absent or all zeros) that also lacks the buyer's e-mail or the product code is nobody's
    purchase either. A false "test" would withhold a paid line, so a postback with a sale code
    is a test only by the product name.
    """
    if _fold(product_name or "") == TEST_PRODUCT_NAME:
        return "test product X-Wing"
    if event is None or (sale_code and set(sale_code) != {"0"}):
        return None  # unreadable postbacks stay "unclassified"
    missing = [what for what, gone in (("no buyer e-mail", not email),
                                       ("no product code", not product_code or set(product_code) == {"0"}))
               if gone]
    return ", ".join(["no sale code", *missing]) if missing else None


def _items(payload: dict) -> tuple[LineItem, ...]:
    """``venda_item_order_bump[]`` (exemplo.php:258-283, main item included, principal 1/0) and
    ``produtos[]`` (ExemploPOSTCallback PR #39 only), one entry per product code."""
    items: dict[str, LineItem] = {}
    for name in ("venda_item_order_bump", "produtos"):
        value = payload.get(name)
        rows = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for row in rows:
            if not isinstance(row, dict):
                continue
            code = _text(row.get("produto")) or _text(row.get("codigo"))
            if code and code not in items:
                items[code] = LineItem(code, _text(row.get("nome")), _text(row.get("principal")) == "1",
                                       _text(row.get("valor")))
    return tuple(items.values())


def parse(body: bytes, content_type: str | None) -> tuple[dict, Postback]:
    """``parse_body`` then ``extract``."""
    payload = parse_body(body, content_type)
    return payload, extract(payload)


# --- facts: what ``parse`` made of a stored body, kept with it until it is applied -----------

def _parser_files() -> tuple[str, ...]:
    """The modules ``parse`` runs: this one, ``form``, the clock it reads dates with, the errors."""
    from iptvsync import clock, errors
    from iptvsync.monetizze import form

    return __file__, form.__file__, clock.__file__, errors.__file__


def _file_stamps() -> tuple[tuple[int, int, int], ...]:
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, _parser_files()))


#: the parser files as they were when this process loaded them (a stat each, no hashing here)
_LOADED = _file_stamps()


@lru_cache(maxsize=1)
def facts_version() -> str | None:
    """The parser's fingerprint: a hash of the modules ``parse`` runs. Facts stored under
    another fingerprint are not trusted: the body is parsed again. So a parser change (a fix,
    a new field) can never leave a pending postback applied from what an older parser made of
    it, and nobody has to remember to bump a number.

    None when those files changed since this process loaded them (an upgrade, ``serve`` not
    restarted yet): the code running is not the code on disk, so this process neither stores
    facts nor trusts any."""
    from pathlib import Path

    digest = hashlib.sha256()
    for module in _parser_files():
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16] if _file_stamps() == _LOADED else None


#: left out: the secrets the receiver checks and the engine never reads
_UNSTORED = ("chave_unica", "product_key")
_FACT_FIELDS = tuple(name for name in Postback.__dataclass_fields__ if name not in (*_UNSTORED, "items"))
_STORED_KEYS = {*_FACT_FIELDS, "items"}


def facts_json(pb: Postback) -> str | None:
    """``pb`` as the inbox keeps it for the apply stage (``from_facts``): JSON, without the
    secrets (``chave_unica``, ``produto[chave]``), which only the receiver checks. None when
    this process cannot vouch for its parser (``facts_version``)."""
    if facts_version() is None:
        return None
    fields = {name: getattr(pb, name) for name in _FACT_FIELDS}
    fields["items"] = [[i.product_code, i.name, i.main, i.amount] for i in pb.items]
    # ASCII: a lone surrogate from a "\\ud800" escape in the body must not stop the row being stored
    return json.dumps([facts_version(), fields], separators=(",", ":"))


def from_facts(text: str | None) -> Postback | None:
    """The Postback ``facts_json`` stored; None when there is none, or when another version of
    the parser made it (then the body is parsed again)."""
    if not text:
        return None
    try:
        version, fields = json.loads(text)
        if version is None or version != facts_version():
            return None
        fields["items"] = tuple(LineItem(*item) for item in fields["items"])
        if fields.keys() != _STORED_KEYS:
            return None
    except (ValueError, TypeError, KeyError):  # not ours: the body is the evidence, parse it
        return None
    # every field given, so __init__ (29 frozen assignments, ~15 µs) has nothing to add
    pb = object.__new__(Postback)
    pb.__dict__.update(fields, chave_unica=None, product_key=None)
    return pb


def _classify(payload: dict, sale: dict) -> tuple[int | None, str]:
    """The event code and where it came from; the first usable source wins."""
    candidates = (
        ("tipoEvento", _block(payload, "tipoEvento").get("codigo")),
        ("postback_evento", payload.get("postback_evento")),
        ("codigo_status", payload.get("codigo_status")),
        ("venda.codigo_status", sale.get("codigo_status")),
    )
    for source, value in candidates:
        code = _int(value)
        if code is not None:
            return code, source
    status = sale.get("status")
    if isinstance(status, str) and _fold(status) in SALE_STATUS_EVENTS:
        return SALE_STATUS_EVENTS[_fold(status)], "venda.status"
    return None, "none"


def _block(payload: dict, name: str) -> dict:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate as U+FFFD: what stores, pages, terminals and mail encode."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _text(value) -> str | None:
    """A scalar as stripped text that any store can encode (a lone surrogate becomes U+FFFD);
    None for absent, empty, bool or container values."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return without_surrogates(str(value).strip()) or None


def unusable_identity(pb: Postback) -> list[str]:
    """Why this postback's sale, buyer or product cannot be trusted as a key: a field holding a
    character no real one has (a lone surrogate, read as U+FFFD; a control or invisible
    character) or longer than any real one. Empty for every postback Monetizze sends."""
    problems = []
    for name, field in IDENTITY_FIELDS.items():
        value = getattr(pb, name)
        if not value or (value.isprintable() and len(value) <= MAX_CODE_CHARS and "\ufffd" not in value):
            continue
        if len(value) > MAX_CODE_CHARS:
            problems.append(f"{field} is {len(value)} characters long")
        elif "\ufffd" in value:
            problems.append(f"{field} holds a lone surrogate (or U+FFFD)")
        else:
            problems.append(f"{field} holds a control or invisible character")
    return problems


def _int(value) -> int | None:
    """An int from an int, an integral float or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_INT_LIMIT < value < _INT_LIMIT else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and -_INT_LIMIT < value < _INT_LIMIT else None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None


@lru_cache(maxsize=1024)  # the same few labels every time ("Mensal", "Finalizada"): ~8 µs each
def _fold(text: str) -> str:
    """Case-, accent- and spacing-blind form for comparing Monetizze's labels."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


def _sao_paulo_to_utc(value) -> str | None:
    """Monetizze's zone-less ``Y-m-d H:i:s`` read as São Paulo time; garbage -> None."""
    text = value.strip() if isinstance(value, str) else ""
    if not _DATE_PREFIX.match(text):  # fromisoformat alone also takes "20261120"
        return None
    try:
        moment = datetime.fromisoformat(text)  # "0000-00-00 00:00:00" fails here: unpaid
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=SAO_PAULO)
        return iso(moment)
    except (ValueError, OverflowError):
        return None


def _canonical(value: dict) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):  # odd keys, cycles, depth: not from parse_body
        return "\x00".join(sorted(str(key) for key in value))


# --- redaction ------------------------------------------------------------------------------
