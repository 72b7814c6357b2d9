"""iptvsync.monetizze.postback: decoding, classification, dedupe keys and redaction of Monetizze postbacks."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iptvsync.errors import MalformedPostback
from iptvsync.ledger.inbox import stored_facts
from iptvsync.monetizze import form as phpform
from iptvsync.monetizze import postback as postback_module
from iptvsync.monetizze.postback import (
    EVENT_KINDS,
    Postback,
    UnsupportedContentType,
    extract,
    from_facts,
    parse,
    parse_body,
)
from iptvsync.monetizze.redact import redact

FIXTURES = Path(__file__).parent / "fixtures" / "monetizze"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SECRET = "0123456789abcdef0123456789abcdef"  # chave_unica of the constructed fixtures


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def encode(payload: dict, encoding: str) -> tuple[bytes, str]:
    """A body and content type as Monetizze would post ``payload``."""
    if encoding == "form":
        return phpform.build_form(payload), FORM
    return json.dumps(payload, ensure_ascii=False).encode(), JSON


def roundtrip(payload: dict, encoding: str) -> Postback:
    return parse(*encode(payload, encoding))[1]


# --- fixtures -------------------------------------------------------------------------------

# name: (event, kind, sale, parcela, subscription, product, email, paid_at, dedupe_key)
# dedupe_key None: a "nosale:" hash.
FIXTURE_EXPECTATIONS = {
    "abandoned-checkout": (7, "ignored", None, None, None, "145388", "maria@example.com", None, None),
    "approved-first-charge": (2, "approved", "51000001", 1, "1104370", "145388", "maria@example.com",
                              "2026-11-20T17:37:57Z", "51000001:2:1"),
    "cancelada-boleto-template": (3, "cancelled", "999999999", 1, "999999", "999999",
                                  "redacted@example.com", "2021-10-11T02:59:59Z", "999999999:3:1"),
    "completed": (6, "complete", "51000001", 1, "1104370", "145388", "maria@example.com",
                  "2026-11-20T17:37:57Z", "51000001:6:1"),
    "disputed": (5, "blocked", "51000001", 1, "1104370", "145388", "maria@example.com",
                 "2026-11-20T17:37:57Z", "51000001:5:1"),
    "one-off-approved-pix": (2, "approved", "51000900", None, None, "145388", "maria@example.com",
                             "2026-11-20T17:37:57Z", "51000900:2:"),
    "refunded": (4, "refunded", "51000001", 1, "1104370", "145388", "maria@example.com",
                 "2026-11-20T17:37:57Z", "51000001:4:1"),
    "renewal-second-charge": (2, "approved", "51000777", 2, "1104370", "145388", "maria@example.com",
                              "2026-12-20T12:02:11Z", "51000777:2:2"),
    "subscription-cancelled": (103, "sub_cancelled", "51000001", 1, "1104370", "145388",
                               "maria@example.com", "2026-11-20T17:37:57Z", "51000001:103:1"),
    "subscription-overdue": (102, "sub_overdue", "51000778", 3, "1104370", "145388",
                             "maria@example.com", None, "51000778:102:3"),
    "waiting-boleto": (1, "waiting", "51000001", 1, "1104370", "145388", "maria@example.com", None,
                       "51000001:1:1"),
}


def test_every_fixture_file_has_expectations():
    names = {path.stem for path in FIXTURES.iterdir() if path.suffix in (".json", ".form")}
    assert names == set(FIXTURE_EXPECTATIONS)


@pytest.mark.parametrize("suffix, content_type", [(".json", JSON), (".form", FORM)])
@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_fixture(name, suffix, content_type):
    event, kind, sale, parcela, subscription, product, email, paid_at, dedupe_key = (
        FIXTURE_EXPECTATIONS[name])
    payload, postback = parse((FIXTURES / f"{name}{suffix}").read_bytes(), content_type)

    assert (postback.event, postback.event_source, postback.kind) == (event, "tipoEvento", kind)
    assert postback.sale_code == sale
    assert postback.parcela == parcela
    assert postback.subscription_code == subscription
    assert postback.product_code == product
    assert postback.buyer_email == email
    assert postback.paid_at == paid_at
    assert postback.recipient_role == 2
    assert postback.is_test is False
    if dedupe_key is None:
        assert postback.dedupe_key.startswith("nosale:") and len(postback.dedupe_key) == 7 + 64
    else:
        assert postback.dedupe_key == dedupe_key
    assert postback.chave_unica == ("ffffffffffffffffffffffffffffffff"
                                    if name == "cancelada-boleto-template" else SECRET)
    if suffix == ".form":  # the `json` field was used, not the placeholder-free bracket fields
        assert isinstance(payload["tipoEvento"]["codigo"], int) and "json" not in payload


@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_form_and_json_of_a_fixture_extract_the_same(name):
    from_json = parse((FIXTURES / f"{name}.json").read_bytes(), JSON)[1]
    from_form = parse((FIXTURES / f"{name}.form").read_bytes(), FORM)[1]
    assert from_form == from_json


@pytest.mark.parametrize("suffix, content_type", [(".json", JSON), (".form", FORM)])
@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_the_facts_kept_for_a_fixture_are_what_parsing_it_gives(name, suffix, content_type):
    """What the writer keeps with a pending row (``facts``) reads back as the parse of its
    bytes, without the two secrets: the apply stage may use it instead of parsing."""
    body = (FIXTURES / f"{name}{suffix}").read_bytes()
    facts = stored_facts(body, content_type)
    expected = dataclasses.replace(parse(body, content_type)[1], chave_unica=None, product_key=None)
    assert from_facts(facts) == expected
    assert SECRET not in facts and "fedcba9876543210fedcba9876543210" not in facts


@pytest.mark.parametrize("stored", ["", "x", "null", "[1]", '["{v}", []]', '["{v}", {{}}]',
                                    '["{v}", {{"items": [[1]]}}]', '["{v}", {{"items": []}}]'])
def test_facts_that_are_not_whole_are_not_trusted(stored):
    """Anything but a whole ``facts_json`` of this parser reads as no facts (the body is then
    parsed), never as a half-filled Postback or an exception in the apply stage."""
    assert from_facts(stored.format(v=postback_module.facts_version())) is None


def test_a_process_whose_parser_changed_on_disk_keeps_and_trusts_no_facts(monkeypatch):
    """After an upgrade the files on disk are not the parser this process runs (``serve`` not
    restarted yet): its fingerprint would name the new parser, so it stores no facts and
    trusts none, and the apply stage parses every body."""
    body = (FIXTURES / "approved-first-charge.form").read_bytes()
    facts = stored_facts(body, FORM)
    assert from_facts(facts) is not None
    monkeypatch.setattr(postback_module, "_LOADED", tuple((0, 0, 0) for _ in postback_module._LOADED))
    postback_module.facts_version.cache_clear()
    try:
        assert postback_module.facts_version() is None
        assert stored_facts(body, FORM) is None and from_facts(facts) is None
    finally:
        postback_module.facts_version.cache_clear()


def test_fixture_details_approved_first_charge():
    postback = parse((FIXTURES / "approved-first-charge.form").read_bytes(), FORM)[1]
    assert postback == Postback(
        event=2, event_source="tipoEvento", kind="approved", sale_code="51000001",
        subscription_code="1104370", parcela=1, subscription_status="Ativa",
        product_code="145388", product_key="fedcba9876543210fedcba9876543210",
        product_name="IPTV Mensal", plan_code="140235", plan_ref="FN140235",
        periodicity="Mensal", period_days=30, buyer_name="Maria Exemplo",
        buyer_email="maria@example.com", started_at="2026-11-20T17:37:55Z",
        paid_at="2026-11-20T17:37:57Z", amount="39.90", payment_method="Cartão de crédito",
        recipient_role=2, is_test=False, chave_unica=SECRET, dedupe_key="51000001:2:1",
        sale_status="Finalizada", period_months=1, codigo_venda="51000001", buyer_phone="00000000000",
    )


def test_one_off_sale_has_no_period():
    postback = parse((FIXTURES / "one-off-approved-pix.json").read_bytes(), JSON)[1]
    assert (postback.periodicity, postback.period_days, postback.payment_method) == (None, None, "Pix")


# --- every event code, both encodings ---------------------------------------------------------

REFERENCE_EVENTS = {
    1: "waiting", 2: "approved", 3: "cancelled", 4: "refunded", 5: "blocked", 6: "complete",
    7: "ignored", 8: "ignored", 98: "ignored", 99: "ignored", 101: "sub_active",
    102: "sub_overdue", 103: "sub_cancelled", 104: "waiting", 105: "ignored", 106: "ignored",
    120: "ignored", 9: "ignored", 777: "ignored",
}


def with_event(code) -> dict:
    payload = load("approved-first-charge")
    payload["tipoEvento"] = {"codigo": code, "descricao": "whatever"}
    payload["postback_evento"] = str(code)
    return payload


def test_event_kinds_table():
    assert EVENT_KINDS == {code: kind for code, kind in REFERENCE_EVENTS.items() if kind != "ignored"}


@pytest.mark.parametrize("encoding", ["json", "form"])
@pytest.mark.parametrize("code", sorted(REFERENCE_EVENTS))
def test_event_code(code, encoding):
    postback = roundtrip(with_event(code), encoding)
    # the sample's sale is Finalizada with a date: an event outside the table still pays
    expected = "sale_paid" if REFERENCE_EVENTS[code] == "ignored" else REFERENCE_EVENTS[code]
    assert (postback.event, postback.kind) == (code, expected)
    assert postback.dedupe_key == f"51000001:{code}:1"
    unpaid = with_event(code)
    unpaid["venda"].update(status="Aguardando pagamento", dataFinalizada="0000-00-00 00:00:00")
    assert roundtrip(unpaid, encoding).kind == REFERENCE_EVENTS[code]


def test_event_105_with_a_paid_sale_is_stored_pending_not_ignored():
    """105 "Recuperação Parcelada – Ativa" (exemplo.php) with venda[status] Finalizada and a
    date: payment evidence (docs/process.md), never settled as ignored."""
    from iptvsync.ledger.inbox import inbox_row

    postback = roundtrip(with_event(105), "form")
    assert postback.kind == "sale_paid"
    row = inbox_row(postback, b"x", content_type="application/x-www-form-urlencoded", remote_addr=None)
    assert row["status"] == "pending"


@pytest.mark.parametrize("code", [2, "2", " 2 ", 2.0])
def test_event_code_as_int_or_string(code):
    payload = with_event(code)
    payload["tipoPostback"]["codigo"] = "2"
    payload["assinatura"]["parcela"] = 1
    postback = roundtrip(payload, "json")
    assert (postback.event, postback.kind, postback.recipient_role, postback.parcela) == (
        2, "approved", 2, 1)
    assert postback.dedupe_key == "51000001:2:1"


# --- fallbacks --------------------------------------------------------------------------------

def without_event_sources(*keep: str) -> dict:
    """The approved fixture with every event source removed except those in ``keep``."""
    payload = load("approved-first-charge")
    if "tipoEvento" not in keep:
        del payload["tipoEvento"]
    if "postback_evento" not in keep:
        del payload["postback_evento"]
    if "codigo_status" not in keep:
        del payload["codigo_status"]
    if "venda.codigo_status" in keep:
        payload["venda"]["codigo_status"] = "4"
    if "venda.status" not in keep:
        del payload["venda"]["status"]
    return payload


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_postback_evento_when_tipo_evento_is_absent(encoding):
    payload = without_event_sources("postback_evento", "codigo_status", "venda.status")
    payload["postback_evento"] = "103"
    postback = roundtrip(payload, encoding)
    assert (postback.event, postback.event_source, postback.kind) == (103, "postback_evento",
                                                                      "sub_cancelled")


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_postback_evento_when_tipo_evento_is_unusable(encoding):
    payload = with_event("abc")
    payload["postback_evento"] = "102"
    postback = roundtrip(payload, encoding)
    assert (postback.event, postback.event_source) == (102, "postback_evento")


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_codigo_status_when_no_event_field(encoding):
    payload = without_event_sources("codigo_status", "venda.codigo_status", "venda.status")
    payload["codigo_status"] = "3"
    postback = roundtrip(payload, encoding)
    assert (postback.event, postback.event_source, postback.kind) == (3, "codigo_status", "cancelled")
    assert postback.dedupe_key == "51000001:3:1"


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_venda_codigo_status_when_no_top_level_status(encoding):
    postback = roundtrip(without_event_sources("venda.codigo_status", "venda.status"), encoding)
    assert (postback.event, postback.event_source, postback.kind) == (4, "venda.codigo_status",
                                                                      "refunded")


@pytest.mark.parametrize("encoding", ["json", "form"])
@pytest.mark.parametrize("status, code, kind", [
    ("Aguardando pagamento", 1, "waiting"),
    ("AGUARDANDO  Pagamento ", 1, "waiting"),
    ("Finalizada", 2, "approved"),
    ("Cancelada", 3, "cancelled"),
    ("devolvida", 4, "refunded"),
    ("Bloqueada", 5, "blocked"),
    ("Complêta", 6, "complete"),
    ("Abandono de Checkout", 7, "ignored"),
])
def test_venda_status_string_as_last_resort(status, code, kind, encoding):
    payload = without_event_sources("venda.status")
    payload["venda"]["status"] = status
    postback = roundtrip(payload, encoding)
    assert (postback.event, postback.event_source, postback.kind) == (code, "venda.status", kind)


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_nothing_usable_is_unclassified(encoding):
    payload = without_event_sources("venda.status")
    payload["venda"]["status"] = "Estornada"
    postback = roundtrip(payload, encoding)
    assert (postback.event, postback.event_source, postback.kind) == (None, "none", "unclassified")
    assert postback.sale_code == "51000001"
    assert postback.dedupe_key.startswith("nosale:")


# --- form details -----------------------------------------------------------------------------

def test_json_field_with_php_escaping():
    payload = load("approved-first-charge")
    payload["venda"]["formaPagamento"] = "Cartão de crédito"
    payload["tipoEvento"]["descricao"] = "Finalizada / Aprovada"
    payload["url_recuperacao"] = "https://app.monetizze.com.br/checkout/X/?rec=1"
    body = phpform.build_form(payload)
    assert b"Cart%5Cu00e3o" in body and b"https%3A%5C%2F%5C%2Fapp" in body
    parsed, postback = parse(body, FORM)
    assert postback.payment_method == "Cartão de crédito"
    assert parsed["url_recuperacao"] == "https://app.monetizze.com.br/checkout/X/?rec=1"
    assert parsed["tipoEvento"]["descricao"] == "Finalizada / Aprovada"


def test_json_field_wins_but_top_level_fields_it_lacks_are_kept():
    inner = load("approved-first-charge")
    del inner["json"], inner["chave_unica"]
    body = phpform.http_build_query({
        "chave_unica": SECRET,
        "tipoEvento": {"codigo": "5"},  # stale bracket copy: the json field is the complete one
        "json": phpform.php_json_encode(inner),
    }).encode()
    payload, postback = parse(body, FORM)
    assert (postback.chave_unica, postback.event, postback.sale_code) == (SECRET, 2, "51000001")
    assert "json" not in payload


def test_broken_json_field_falls_back_to_bracket_fields():
    payload = with_event(4)
    body = phpform.build_form(payload, json_field=False) + b"&json=%7Bnot+json"
    postback = parse(body, FORM)[1]
    assert (postback.event, postback.sale_code, postback.chave_unica) == (4, "51000001", SECRET)


def test_bracket_only_form_extracts_like_json():
    payload = load("renewal-second-charge")
    from_brackets = parse(phpform.build_form(payload, json_field=False), FORM)
    assert from_brackets[1] == parse(json.dumps(payload).encode(), JSON)[1]
    assert from_brackets[0]["comissoes"] == [{
        "refAfiliado": "ZZ99999999", "nome": "Nome afiliado", "email": "email@exemplo.com",
        "tipo_comissao": "último Clique", "valor": "45.00", "porcentagem": "70.22000",
    }]


def test_php_bracket_keys():
    body = b"a%5Bb%5D%5B%5D=1&a%5Bb%5D%5B%5D=2&x=first&x=last&m%5B0%5D=z&m%5B2%5D=y&plain=%C3%A3"
    assert parse_body(body, FORM) == {
        "a": {"b": ["1", "2"]}, "x": "last", "m": {"0": "z", "2": "y"}, "plain": "ã",
    }


def test_form_nesting_deeper_than_php_allows_is_dropped():
    body = b"a" + b"%5Bk%5D" * 100_000 + b"=1&b=2"
    assert parse_body(body, FORM) == {"b": "2"}


def test_test_button_form_without_json_field():
    payload = {
        "chave_unica": SECRET,
        "produto": {"codigo": "1", "chave": "k", "nome": "X-Wing"},
        "tipoEvento": {"codigo": 2, "descricao": "Finalizada / Aprovada"},
        "venda": {"codigo": "123", "status": "Finalizada", "dataFinalizada": "2026-01-02 03:04:05"},
    }
    body = phpform.build_form(payload, json_field=False)
    assert b"json=" not in body
    postback = parse(body, FORM)[1]
    assert postback.is_test is True
    assert (postback.event, postback.kind, postback.sale_code) == (2, "approved", "123")
    assert (postback.buyer_email, postback.subscription_code, postback.plan_code) == (None, None, None)
    assert postback.paid_at == "2026-01-02T06:04:05Z"
    assert postback.dedupe_key == "test:123:2:"  # never the key of a real sale 123


@pytest.mark.parametrize("name, is_test", [("X-Wing", True), (" x-wing ", True), ("IPTV X-Wing", False)])
def test_is_test_only_for_the_test_product(name, is_test):
    payload = load("approved-first-charge")
    payload["produto"]["nome"] = name
    assert roundtrip(payload, "json").is_test is is_test


def test_multipart_form_data():
    payload = load("approved-first-charge")
    fields = [("chave_unica", SECRET), ("venda[codigo]", "51000001"),
              ("json", phpform.php_json_encode({k: v for k, v in payload.items() if k != "json"}))]
    parts = b"".join(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (
            name.encode(), value.encode()) for name, value in fields)
    body = parts + b"--XyZ--\r\n"
    postback = parse(body, "multipart/form-data; boundary=XyZ")[1]
    assert postback == parse((FIXTURES / "approved-first-charge.form").read_bytes(), FORM)[1]


# --- content types and malformed bodies -------------------------------------------------------

def test_content_type_parameters_and_sniffing():
    form = (FIXTURES / "refunded.form").read_bytes()
    body = (FIXTURES / "refunded.json").read_bytes()
    expected = parse(body, JSON)[1]
    assert parse(form, "Application/X-WWW-Form-Urlencoded; charset=UTF-8")[1] == expected
    assert parse(body, "application/json; charset=utf-8")[1] == expected
    assert parse(form, None)[1] == expected
    assert parse(b"\n  " + body, "")[1] == expected
    assert parse(body, FORM)[1] == expected  # JSON under a form label: a PHP form never starts with {


def test_latin1_form_charset():
    assert parse_body(b"comprador%5Bnome%5D=Jo%E3o", f"{FORM}; charset=ISO-8859-1") == {
        "comprador": {"nome": "João"}}


@pytest.mark.parametrize("body, content_type", [
    (b"{\"venda\": ", JSON),
    (b"[1, 2]", JSON),
    (b"\"text\"", JSON),
    (b"[{\"a\": 1}]", None),
    (b"\xff\xfe{}", JSON),
    (b"", FORM),
    (b"", None),
    (b" \r\n", JSON),
    (b"&&&", FORM),
    (b"[" * 100_000, JSON),
    (b"no boundary", "multipart/form-data"),
])
def test_malformed_bodies(body, content_type):
    with pytest.raises(MalformedPostback) as raised:
        parse_body(body, content_type)
    assert type(raised.value) is MalformedPostback


@pytest.mark.parametrize("body, content_type, expected", [
    (b"venda%5Bcodigo%5D=\xff", FORM, "\xff"),
    (b"venda%5Bcodigo%5D=%FF", FORM, "\xff"),
    (b"venda%5Bcodigo%5D=Jos%E9", None, "Jos\xe9"),
    (b"venda%5Bcodigo%5D=Jos%E9", f"{FORM}; charset=no-such-codec", "Jos\xe9"),
    (b'{"venda": {"codigo": "Jos\xe9"}}', JSON, "Jos\xe9"),
])
def test_text_outside_the_declared_charset_is_read_as_latin_1(body, content_type, expected):
    assert parse_body(body, content_type) == {"venda": {"codigo": expected}}


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "text/html; charset=utf-8"])
def test_unsupported_content_type(content_type):
    with pytest.raises(UnsupportedContentType):
        parse_body(b"venda%5Bcodigo%5D=1", content_type)
    assert issubclass(UnsupportedContentType, MalformedPostback)


# --- odd and missing fields -------------------------------------------------------------------

@pytest.mark.parametrize("odd", [None, "", "texto", [], ["a", "b"], 0])
def test_missing_or_odd_optional_blocks_never_raise(odd):
    payload = load("approved-first-charge")
    for block in ("comprador", "assinatura", "plano", "produto", "tipoPostback"):
        payload[block] = odd
    postback = extract(payload)
    assert (postback.event, postback.sale_code) == (2, "51000001")
    assert (postback.buyer_email, postback.subscription_code, postback.parcela) == (None, None, None)
    assert (postback.plan_code, postback.period_days, postback.product_name) == (None, None, None)
    assert postback.recipient_role is None
    assert postback.dedupe_key == "51000001:2:"


def test_absent_optional_blocks_never_raise():
    payload = load("approved-first-charge")
    for block in ("comprador", "assinatura", "plano", "produto", "tipoPostback"):
        del payload[block]
    for encoding in ("json", "form"):
        postback = roundtrip(payload, encoding)
        assert (postback.kind, postback.buyer_email, postback.parcela) == ("approved", None, None)


def test_empty_payload_and_non_dict():
    for payload in ({}, [], None):
        postback = extract(payload)
        assert (postback.event, postback.kind, postback.event_source) == (None, "unclassified", "none")
        assert postback.dedupe_key.startswith("nosale:")


def test_sale_code_falls_back_to_codigo_venda():
    payload = load("approved-first-charge")
    del payload["venda"]["codigo"]
    payload["codigo_venda"] = 51000002
    assert extract(payload).sale_code == "51000002"


def test_buyer_email_is_stripped_and_lower_cased():
    payload = load("approved-first-charge")
    payload["comprador"]["email"] = "  Maria.Exemplo@Example.COM \n"
    assert extract(payload).buyer_email == "maria.exemplo@example.com"


@pytest.mark.parametrize("periodicity, days", [
    ("Semanal", 7), ("Mensal", 30), ("Bimestral", 60), ("Trimestral", 90), ("Semestral", 180),
    ("Anual", 365), ("  ANUAL ", 365), ("Quinzenal", None), ("", None), (None, None),
])
def test_period_days(periodicity, days):
    payload = load("approved-first-charge")
    payload["plano"]["periodicidade"] = periodicity
    assert extract(payload).period_days == days


@pytest.mark.parametrize("text, utc", [
    ("2026-11-20 14:37:57", "2026-11-20T17:37:57Z"),
    ("2018-12-01 12:00:00", "2018-12-01T14:00:00Z"),  # Brazilian summer time (UTC-2), abolished 2019
    ("2018-07-01 12:00:00", "2018-07-01T15:00:00Z"),
    ("2026-11-20 14:37:57-03:00", "2026-11-20T17:37:57Z"),
    ("0000-00-00 00:00:00", None),
    ("", None),
    ("ontem", None),
    ("2026-02-30 10:00:00", None),
    ("9999-12-31 23:59:59", None),
    (None, None),
    (20261120, None),
    ("20261120", None),
])
def test_dates_are_sao_paulo_time(text, utc):
    payload = load("approved-first-charge")
    payload["venda"]["dataFinalizada"] = text
    payload["venda"]["dataInicio"] = text
    postback = extract(payload)
    assert (postback.paid_at, postback.started_at) == (utc, utc)


# --- dedupe keys ------------------------------------------------------------------------------

def test_recipient_role_is_not_part_of_the_dedupe_key():
    producer = load("approved-first-charge")
    affiliate = copy.deepcopy(producer)
    affiliate["tipoPostback"] = {"codigo": 4, "descricao": "Afiliado"}
    assert extract(producer).dedupe_key == extract(affiliate).dedupe_key == "51000001:2:1"


def test_abandoned_checkout_keys():
    first = load("abandoned-checkout")
    resend = copy.deepcopy(first)
    resend["tipoPostback"] = {"codigo": 4, "descricao": "Afiliado"}
    resend["chave_unica"] = "another account key"
    other = copy.deepcopy(first)
    other["url_recuperacao"] = "https://app.monetizze.com.br/checkout/X/?rec=2"
    assert extract(first).dedupe_key == extract(resend).dedupe_key
    assert extract(first).dedupe_key != extract(other).dedupe_key
    assert extract(first).dedupe_key == roundtrip(first, "form").dedupe_key


# --- redaction --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content_type", [
    ("approved-first-charge.form", FORM), ("approved-first-charge.json", JSON),
    ("abandoned-checkout.form", FORM), ("abandoned-checkout.json", JSON),
])
def test_redact_fixture_bodies(name, content_type):
    body = (FIXTURES / name).read_bytes()
    assert body.count(SECRET.encode()) == (2 if name.endswith(".form") else 1)
    redacted = redact(body, SECRET)
    assert SECRET.encode() not in redacted
    before, after = parse(body, content_type)[1], parse(redacted, content_type)[1]
    assert after == dataclasses.replace(before, chave_unica=None)


@pytest.mark.parametrize("encoding", ["json", "json-ascii", "form"])
def test_redact_secret_with_characters_that_need_escaping(encoding):
    secret = "s3cr/et~ chave+é\"x"
    payload = load("approved-first-charge")
    payload["chave_unica"] = secret
    if encoding == "form":
        body, content_type = phpform.build_form(payload), FORM
    else:
        body = json.dumps(payload, ensure_ascii=encoding == "json-ascii").encode()
        content_type = JSON
    assert parse(body, content_type)[1].chave_unica == secret
    redacted = redact(body, secret)
    for leak in (secret, phpform.php_urlencode(secret), json.dumps(secret)[1:-1], "s3cr"):
        assert leak.encode() not in redacted
    assert parse(redacted, content_type)[1] == dataclasses.replace(
        parse(body, content_type)[1], chave_unica=None)


HIDDEN = SECRET[:-1] + "%5Cu0066"  # the key with its last letter as a JSON \u escape, percent-encoded


@pytest.mark.parametrize("body", [
    f"chave_unica={SECRET}%5Cd&venda%5Bcodigo%5D=1".encode(),  # "\d" right after the key
    (f"json=%7B%22chave_unica%22%3A%22{HIDDEN}%22%7D&note=%5Cd%5C8%5C400".encode()),  # only decoding finds it
    (f"json=%7B%22chave_unica%22%3A%22{HIDDEN}%5C%5Cd%22%7D".encode()),  # "\\d" in the JSON: a backslash, d
], ids=["after-the-key", "hidden-elsewhere", "escaped-backslash"])
def test_redact_beside_unknown_backslash_escapes_warns_nothing_and_misses_nothing(body):
    """``\\d`` is no escape Python's unicode_escape codec knows: it warned (DeprecationWarning),
    an error under ``-W error``, and newer Pythons may refuse it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        redacted = redact(body, SECRET, FORM)
    assert SECRET.encode() not in redacted
    assert SECRET not in json.dumps(parse(redacted, FORM)[0])


def test_redact_a_secret_holding_a_backslash_sequence():
    import warnings

    secret = "s3cr\\d-chave\\u00e9"
    payload = load("approved-first-charge")
    payload["chave_unica"] = secret
    payload["comprador"]["nome"] = "Jo\\d " + secret
    for body, content_type in ((phpform.build_form(payload), FORM), (json.dumps(payload).encode(), JSON)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            redacted = redact(body, secret, content_type)
        for leak in (secret, phpform.php_urlencode(secret), json.dumps(secret)[1:-1]):
            assert leak.encode() not in redacted
        assert secret not in json.dumps(parse(redacted, content_type)[0], ensure_ascii=False)


def test_redact_lower_case_percent_escapes():
    body = b"chave_unica=ab%2fcd&venda%5Bcodigo%5D=1"
    assert redact(body, "ab/cd") == b"chave_unica=&venda%5Bcodigo%5D=1"


def test_redact_with_empty_secret_changes_nothing():
    body = (FIXTURES / "refunded.form").read_bytes()
    assert redact(body, "") == body


# --- property ---------------------------------------------------------------------------------

KEYS = st.sampled_from([
    "venda", "codigo", "status", "codigo_status", "dataInicio", "dataFinalizada", "valor",
    "tipoEvento", "postback_evento", "codigo_venda", "assinatura", "parcela", "plano",
    "periodicidade", "produto", "nome", "comprador", "email", "tipoPostback", "chave_unica", "json",
]) | st.text(max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["0000-00-00 00:00:00", "2018-12-01 12:00:00", "Mensal", " 2 ", "Finalizada"]))
VALUES = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(KEYS, children, max_size=5), max_leaves=30)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_extract_never_raises(payload):
    postback = extract(payload)
    assert isinstance(postback.dedupe_key, str) and postback.dedupe_key
    assert postback.kind in {*EVENT_KINDS.values(), "ignored", "unclassified"}
    assert (postback.event is None) == (postback.kind == "unclassified")
    assert postback == extract(copy.deepcopy(payload))


def test_extract_survives_payloads_parse_body_never_makes():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    cyclic: dict = {}
    cyclic["self"] = cyclic
    for payload in ({"a": deep}, cyclic, {1: "int key", "b": 2}):
        assert extract(payload).dedupe_key.startswith("nosale:")


def test_multipart_with_non_utf8_field_is_read_as_latin_1():
    body = b"--B\r\nContent-Disposition: form-data; name=\"venda[codigo]\"\r\n\r\n\xff\r\n--B--\r\n"
    assert parse_body(body, "multipart/form-data; boundary=B") == {"venda": {"codigo": "\xff"}}


# --- the fast path for Monetizze's form body ------------------------------------------------

def _full_decoding(body: bytes) -> dict:
    from iptvsync.monetizze.postback import _form_fields, _payload_from_fields

    return _payload_from_fields(_form_fields(body, "utf-8"))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.form")), ids=lambda p: p.name)
def test_json_field_fast_path_equals_the_full_decoding(path):
    from iptvsync.monetizze.form import json_field_payload

    body = path.read_bytes()
    fast = json_field_payload(body)
    assert fast is not None  # every Monetizze-shaped body takes the fast path
    assert fast == _full_decoding(body)


@pytest.mark.parametrize("mutate", [
    lambda b: b + b"&extra_top_level=1",                    # a key the json copy lacks
    lambda b: b + b"&json=%7B%7D",                          # a second json field
    lambda b: b.replace(b"json=", b"json%5Bx%5D=", 1),      # json[...] instead of json
    lambda b: b.replace(b"json=%7B", b"json=%7Bnot", 1),    # a broken copy
    lambda b: b + b"&bad=%FF%FE",                           # not UTF-8
])
def test_fast_path_declines_what_it_cannot_prove(mutate):
    from iptvsync.monetizze.form import json_field_payload

    body = mutate((FIXTURES / "approved-first-charge.form").read_bytes())
    fast = json_field_payload(body)
    if fast is not None:
        assert fast == _full_decoding(body)
    else:  # the full decoding decides, and parse() still answers or rejects as before
        try:
            expected = _full_decoding(body)
        except MalformedPostback:
            with pytest.raises(MalformedPostback):
                parse_body(body, "application/x-www-form-urlencoded")
        else:
            assert parse_body(body, "application/x-www-form-urlencoded") == expected


def test_monetizze_content_type_typo_is_a_form():
    """A Monetizze answer says it posts `application/x-www-form-urlencode` (sic)."""
    body = (FIXTURES / "approved-first-charge.form").read_bytes()
    typo = parse(body, "application/x-www-form-urlencode")[1]
    assert typo == parse(body, "application/x-www-form-urlencoded")[1]


def test_venda_codigo_and_codigo_venda_are_both_kept():
    """exemplo.php's receiver reads venda[codigo] ("Código da transação"); codigo_venda is only
    in PR #39's composite sample, where it differs (42063567 vs 41852883)."""
    payload = load("approved-first-charge")
    payload["codigo_venda"] = "42063567"
    payload["venda"]["codigo"] = "41852883"
    postback = roundtrip(payload, "form")
    assert (postback.sale_code, postback.codigo_venda, postback.sale_codes_differ) == ("41852883", "42063567", True)
    payload["codigo_venda"] = "41852883"
    assert roundtrip(payload, "json").sale_codes_differ is False
