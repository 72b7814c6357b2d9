"""A message kind as WhatsApp text, or as the body variables of its Cloud API template.

Texts live in ``iptvsync/templates/whatsapp/<language>/<kind>.txt``; ``[whatsapp]
templates_dir`` overrides any of them by file name (``<templates_dir>/<language>/`` first).
They use WhatsApp's own formatting (``*bold*``, ``_italic_``, three backticks for monospace),
never HTML, and get the email context (``render.py`` documents it) and its filters.

Every value printed is made one line of plain text first: a buyer's name with a newline or
control characters in it cannot add lines to the message, and Meta refuses template
variables with newlines, tabs or more than four spaces in a row.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2

from .render import KINDS, first_name, format_date, localdt, required_keys

_SPACE = re.compile(r"[\s\u0000-\u001f\u007f\u2028\u2029]+")

#: kind -> the Cloud API template's body variables, in order ({{1}}, {{2}} …)
CLOUD_PARAMS = {
    "activation": ("first_name", "product_name", "username", "password", "server", "expires_at", "support"),
    "renewal": ("first_name", "product_name", "expires_at", "support"),
    "cancellation": ("first_name", "product_name", "expires_at", "support"),
    "access_ended": ("first_name", "product_name", "expires_at", "support"),
    "refund": ("first_name", "product_name", "expires_at", "support"),
    "payment_failed": ("first_name", "product_name", "expires_at", "support"),
    "reminder": ("first_name", "product_name", "days_left", "expires_at", "support"),
    "expired": ("first_name", "product_name", "expires_at", "support"),
    "resumed": ("first_name", "product_name", "expires_at", "support"),
}


def one_line(value) -> str:
    return _SPACE.sub(" ", str(value)).strip()


def render_text(kind: str, context: dict, language: str = "pt-BR", templates_dir: str | Path | None = None) -> str:
    """The WhatsApp text of one message; ``ValueError`` for an unknown kind or a missing key."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}; kinds: {', '.join(KINDS)}")
    missing = [key for key in required_keys(kind) if key not in context]
    if missing:
        raise ValueError(f"{kind} message context lacks: {', '.join(missing)}")
    text = _environment(language, str(templates_dir or "")).get_template(f"{kind}.txt").render(context)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def cloud_params(kind: str, context: dict, language: str = "pt-BR") -> tuple[str, ...]:
    """The body variables of ``kind``'s Cloud API template, each one line and never empty."""
    values = {**context, "first_name": first_name(context.get("buyer_name", "")) or
              ("cliente" if language == "pt-BR" else "customer"),
              "expires_at": localdt(context["expires_at"], language)}
    if kind == "reminder":
        values["days_left"] = str(context["days_left"])
    return tuple(one_line(values.get(name, "")) or "-" for name in CLOUD_PARAMS[kind])


@lru_cache(maxsize=16)
def _environment(language: str, templates_dir: str) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        loaders += [jinja2.FileSystemLoader(Path(templates_dir) / language), jinja2.FileSystemLoader(templates_dir)]
    loaders.append(jinja2.PackageLoader("iptvsync", f"templates/whatsapp/{language}"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=False,
                             finalize=lambda value: one_line(value) if isinstance(value, str) else value)
    env.filters["localdt"] = lambda value: localdt(value, language)
    env.filters["date"] = lambda value: format_date(value, language)
    env.filters["first_name"] = lambda value: one_line(first_name(value))
    return env
