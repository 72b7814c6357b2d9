"""One way to print: for people, a table (or a record per item when a table would not fit);
for scripts, ``--json``.

People read over SSH at 80 columns, often through a pipe: every value is printed as text,
never as rich markup (a buyer named "[b]Ana" stays that); times are São Paulo time with the
UTC offset; nothing is cut to "maria@…": a row that does not fit becomes a record, and a long
value wraps at its spaces, never inside a word. ``--wide`` keeps the table whatever its width.
JSON is the data as stored (ISO-8601 UTC times), whatever the layout.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import typer

from ..clock import human

if TYPE_CHECKING:
    from rich.console import Console

JSON_OPTION = typer.Option(False, "--json", help="Print JSON (times in ISO-8601 UTC) instead of a table.")
WIDE_OPTION = typer.Option(False, "--wide", help="Keep the table however wide it gets (default: a record per row"
                                                " when it does not fit the terminal).")

#: a UTC time as the ledger stores it (``...Z``) or as Python prints one (``... +00:00``)
ISO_UTC = re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|\+00:00)")
#: audit detail keys that are yes or no, whether stored as true/false or 1/0
FLAG_KEYS = frozenset({"enabled"})
MIN_WRAPPED = 30  # the narrowest a wrapping column may get before rows become records


def cell_len(text: str) -> int:
    """The terminal cells ``text`` takes (``rich.cells.cell_len``): one per character for
    printable ASCII, which is what rich counts too, without importing rich for it (~2.5 ms of
    a command's start); anything else is measured by rich."""
    if text.isascii() and text.isprintable():
        return len(text)
    from rich.cells import cell_len as rich_cell_len

    return rich_cell_len(text)


def console(width: int | None = None) -> Console:
    """No markup, no highlighting, no emoji: what is printed is exactly the text. Only tables
    need it: rich's console and tables are ~25 ms of a command's start, so records and single
    items print without them."""
    from rich.console import Console

    return Console(markup=False, highlight=False, emoji=False, width=width)


def terminal_width() -> int:
    """The width ``console().width`` has, found the way rich finds it (POSIX): a dumb terminal
    is 80 wide; else ``COLUMNS`` when it is a number; else the first of stdin, stdout, stderr
    that is a terminal; else 80."""
    is_terminal = sys.stdout is not None and sys.stdout.isatty()
    if is_terminal and os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return 80
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    for descriptor in (0, 1, 2):
        try:
            return os.get_terminal_size(descriptor).columns or 80
        except (AttributeError, ValueError, OSError):  # not a terminal
            continue
    return 80


def text(value, key: str = "") -> str:
    """A value as an operator reads it: ISO times (also inside text) and unix expiry seconds in
    São Paulo time, booleans (and the 1/0 of ``FLAG_KEYS``) as yes/no, structures as compact
    JSON, None as nothing."""
    if value is None:
        return ""
    if key in FLAG_KEYS and type(value) is int and value in (0, 1):
        value = bool(value)  # the audit holds True from some stages and 1 from others
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and key.endswith("expires_at") and value > 0:
        return human(value)
    if isinstance(value, str) and value.startswith("{"):  # an audit row's detail
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, dict):
        return "  ".join(f"{k}={text(v, k)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        value = json.dumps(value, default=str, ensure_ascii=False, separators=(", ", ": "))
    return printable(ISO_UTC.sub(lambda m: human(m.group(0).replace(" ", "T").replace("+00:00", "Z")), str(value)))


def printable(value: str) -> str:
    """``value`` with its non-printable characters (ESC, BEL, NUL, a newline...) written as
    escapes: what a buyer typed never moves the cursor, retitles or clears the terminal."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _stream_json(rows: Iterable[dict]) -> None:
    """The text ``print_json(list(rows))`` would print, written a row at a time, so a long
    listing (``subs list --limit 100000 --json``) never holds every row in memory."""
    empty = True
    for row in rows:
        text = json.dumps(row, indent=2, default=str, ensure_ascii=False)
        typer.echo(("[\n" if empty else ",\n") + textwrap.indent(text, "  "), nl=False)
        empty = False
    typer.echo("[]" if empty else "\n]")


def emit(rows: Iterable[dict], columns: Sequence[str], *, as_json: bool, title: str | None = None,
         wide: bool = False) -> None:
    if as_json:
        _stream_json(rows)
        return
    rows = list(rows)
    width = terminal_width()
    title = text(title) if title else None
    if not rows:
        typer.echo(f"{title}: (none)" if title else "(none)")
        return
    cells = [[text(row.get(c), c) for c in columns] for row in rows]
    widths = [max(cell_len(col), *(cell_len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    needed = sum(widths) + 3 * len(columns) + 1  # one space each side of a cell, one rule between
    if wide or needed <= width:
        _table(console(width=max(needed, width)) if wide else console(), cells, columns, title, wrap=None)
        return
    # Too wide: the table still reads well when only its widest column has to wrap, and that
    # column keeps a fair width (a doctor's detail, an error); else a record per row.
    widest = widths.index(max(widths))
    if needed - widths[widest] + MIN_WRAPPED <= width:
        _table(console(), cells, columns, title, wrap=widest)
    else:
        _records(width, rows, columns, title)


def _table(out: Console, cells: list[list[str]], columns: Sequence[str], title: str | None,
           wrap: int | None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None, show_lines=False)
    for i, col in enumerate(columns):
        table.add_column(Text(col), overflow="fold", no_wrap=wrap is not None and i != wrap)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    out.print(table)


def _records(width: int, rows: list[dict], columns: Sequence[str], title: str | None) -> None:
    """A block per row, ``name  value`` lines, empty values left out; values wrap, never cut.
    Plain text (no rich rendering): a hundred records print in milliseconds."""
    lines = [f"{title} ({len(rows)})"] if title else []
    for row in rows:
        lines.append("─" * min(width, 40))
        lines += _field_lines([(c, row.get(c)) for c in columns], width, skip_empty=True)
    typer.echo("\n".join(lines))


def _field_lines(items: list[tuple[str, object]], width: int, *, skip_empty: bool) -> list[str]:
    shown = [(key, text(value, key)) for key, value in items]
    shown = [(key, value) for key, value in shown if value != "" or not skip_empty]
    if not shown:
        return []
    key_width = max(cell_len(key) for key, _ in shown)
    room = max(MIN_WRAPPED, width - key_width - 2)
    lines = []
    for key, value in shown:
        chunks = _wrap(value, room)
        lines.append(f"{key.ljust(key_width)}  {chunks[0]}".rstrip())
        lines += [" " * (key_width + 2) + chunk for chunk in chunks[1:]]
    return lines


#: an audit detail's ``name=value``, which may break after its ``=`` when it does not fit a line
_NAMED = re.compile(r"(?<!\S)([\w.]+=)(?=\S)")


def _wrap(value: str, width: int, indent: str = "") -> list[str]:
    """Wrap at spaces, never inside a word: a word longer than the line (an email, a Message-ID,
    a URL) gets a line of its own and overflows it, whole, so it can be copied and searched
    for. A ``name=value`` too long for a line breaks after its ``=`` first."""
    out = []
    for paragraph in value.splitlines() or [""]:
        # the space added after "name=" only ever becomes a line break: with it, the pair is
        # still longer than a line
        paragraph = " ".join(_NAMED.sub(r"\1 ", word) if len(word) > width - len(indent) else word
                             for word in paragraph.split(" "))
        out += textwrap.wrap(paragraph, width, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False) or [""]
    return out


def emit_one(row: dict, *, as_json: bool) -> None:
    """One item as ``name  value`` lines; lists of records (charges, emails) as indented lines."""
    if as_json:
        print_json(row)
        return
    width = terminal_width()
    lines = _field_lines([(k, v) for k, v in row.items() if not _is_records(v)], width, skip_empty=False)
    for key, value in row.items():
        if _is_records(value):
            lines.append(f"{key} ({len(value)})")
            for item in value:
                lines += _wrap("  - " + text(item), width, indent="    ")
    typer.echo("\n".join(lines))


def _is_records(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
