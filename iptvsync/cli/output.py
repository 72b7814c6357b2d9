"""One way to print lists: a rich table for people, ``--json`` for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import typer
from rich.console import Console
from rich.table import Table

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def emit(rows: Iterable[dict], columns: Sequence[str], *, as_json: bool, title: str | None = None) -> None:
    rows = list(rows)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
        return
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)
    if not rows:
        typer.echo("(none)")


def emit_one(row: dict, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(row, indent=2, default=str, ensure_ascii=False))
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in row.items():
        table.add_row(key, "" if value is None else str(value))
    Console().print(table)
