"""Turn an email kind and its context into a subject, a text body and an HTML body.

Templates live in ``iptvsync/templates/email/<language>/`` as ``<kind>.subject.txt``,
``<kind>.txt`` and ``<kind>.html``. An operator's ``templates_dir`` overrides any of them by
file name: ``<templates_dir>/<language>/`` first, then ``<templates_dir>/`` itself, then the
shipped ones. A new language is a complete ``<templates_dir>/<language>/`` folder.

Context contract (a missing key is an error, never a blank; extra keys are allowed):

every kind
    ``buyer_name`` (str, may be empty), ``product_name``, ``support`` (how to get help, free
    text such as "WhatsApp +55 11 90000-0000"), ``username``, ``server`` (the server URL that
    Xtream-login apps ask for), ``m3u`` and ``epg`` (links; they embed the password, which is
    expected), ``expires_at`` (aware datetime or ISO-8601 UTC text such as
    ``2026-12-20T17:37:57Z``): the expiry for activation, renewal and reminder, the
    access-until date for cancellation and payment_failed, the moment access ended for
    access_ended (cancelled with immediate effect), refund and expired.
    Optional: ``recurring`` (bool, default true): false for a manual grant, whose
    cancellation emails then say nothing about charges.
activation
    also ``password``.
reminder
    also ``days_left`` (int, >= 0).

Templates get two filters: ``localdt`` (date and time in São Paulo, e.g. ``20/12/2026 14:37``
in pt-BR) and ``date`` (the date alone), plus ``first_name`` for greetings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2

from iptvsync.clock import SAO_PAULO, parse_iso

KINDS = ("activation", "renewal", "cancellation", "access_ended", "refund", "payment_failed", "reminder", "expired",
         "resumed")
DEFAULT_LANGUAGE = "pt-BR"

COMMON_KEYS = ("buyer_name", "product_name", "support", "username", "server", "m3u", "epg", "expires_at")
EXTRA_KEYS = {"activation": ("password",), "reminder": ("days_left",)}

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def required_keys(kind: str) -> tuple[str, ...]:
    """The context keys ``kind`` needs."""
    _check_kind(kind)
    return COMMON_KEYS + EXTRA_KEYS.get(kind, ())


def available_languages(templates_dir: str | Path | None = None) -> list[str]:
    """Shipped languages plus any ``<templates_dir>/<language>/`` folder, sorted."""
    found = _shipped_languages()
    if templates_dir:
        root = Path(templates_dir)
        if root.is_dir():
            found |= {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    return sorted(found)


def render(kind: str, context: dict, language: str = DEFAULT_LANGUAGE,
           templates_dir: str | Path | None = None) -> RenderedEmail:
    """Render one email; ``ValueError`` for an unknown kind or language or a missing key.

    A broken override template raises the ``jinja2.TemplateError`` that names it.
    """
    missing = [key for key in required_keys(kind) if key not in context]
    if missing:
        raise ValueError(f"{kind} email context lacks: {', '.join(missing)}")
    languages = available_languages(templates_dir)
    if language not in languages:
        raise ValueError(f"unknown email language {language!r}; available: {', '.join(languages)}")
    env = _environment(language, str(templates_dir or ""))
    try:
        subject = env.get_template(f"{kind}.subject.txt").render(context)
        return RenderedEmail(
            subject=" ".join(subject.split()),
            text=env.get_template(f"{kind}.txt").render(context).strip() + "\n",
            html=env.get_template(f"{kind}.html").render(context),
        )
    except jinja2.TemplateSyntaxError as exc:  # its text alone names neither file nor line
        where = exc.filename or exc.name or "a template"
        exc.args = (f"{where}, line {exc.lineno}: {exc.message}",)
        exc.translated = True  # str() is that one line
        raise


def sample_context(kind: str) -> dict:
    """A complete, realistic context for ``kind`` (tests and preview commands)."""
    server = "http://tv.example.com:8080"
    username, password = "mariasilva7k2q", "Zr8tW4nLqE"
    context = {
        "buyer_name": "Maria da Silva",
        "product_name": "IPTV Mensal",
        "support": "WhatsApp +55 11 90000-0000",
        "username": username,
        "server": server,
        "m3u": f"{server}/get.php?username={username}&password={password}&type=m3u_plus&output=ts",
        "epg": f"{server}/xmltv.php?username={username}&password={password}",
        "expires_at": "2026-12-20T17:37:57Z",
        "password": password,
        "days_left": 3,
    }
    return {key: context[key] for key in required_keys(kind)}


def localdt(value: datetime | str, language: str = DEFAULT_LANGUAGE) -> str:
    """São Paulo date and time, e.g. ``20/12/2026 14:37`` (pt-BR), ``20 Dec 2026 14:37`` (en)."""
    local = _sao_paulo(value)
    return f"{format_date(local, language)} {local:%H:%M}"


def format_date(value: datetime | str, language: str = DEFAULT_LANGUAGE) -> str:
    """São Paulo date alone: ``20/12/2026`` (pt-BR), ``20 Dec 2026`` (en), ISO otherwise."""
    local = _sao_paulo(value)
    if language == "pt-BR":
        return f"{local:%d/%m/%Y}"
    if language == "en":
        return f"{local.day} {_MONTHS_EN[local.month - 1]} {local.year}"
    return f"{local:%Y-%m-%d}"


def first_name(full_name: str) -> str:
    """"MARIA DA SILVA" → "Maria"; names typed all in one case are title-cased."""
    parts = (full_name or "").split()
    if not parts:
        return ""
    name = parts[0]
    return name.title() if name.isupper() or name.islower() else name


def _sao_paulo(value: datetime | str) -> datetime:
    moment = parse_iso(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"expected an aware datetime or ISO-8601 UTC text, got {value!r}")
    return moment.astimezone(SAO_PAULO)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}; kinds: {', '.join(KINDS)}")


def _shipped_languages() -> set[str]:
    root = resources.files("iptvsync") / "templates" / "email"
    return {entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("_")}


@lru_cache(maxsize=32)
def _environment(language: str, templates_dir: str) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        loaders += [jinja2.FileSystemLoader(Path(templates_dir) / language),
                    jinja2.FileSystemLoader(templates_dir)]
    if language in _shipped_languages():
        loaders.append(jinja2.PackageLoader("iptvsync", f"templates/email/{language}"))
    loaders.append(jinja2.PackageLoader("iptvsync", "templates/email"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["localdt"] = lambda value: localdt(value, language)
    env.filters["date"] = lambda value: format_date(value, language)
    env.filters["first_name"] = first_name
    env.globals["language"] = language
    return env
