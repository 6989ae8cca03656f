"""Printing results: ``--output table`` (rich) or ``--output json`` (for scripts)."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


class Output(enum.StrEnum):
    table = "table"
    json = "json"


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def print_pairs(title: str | None, rows: Sequence[tuple[str, Any]]) -> None:
    """A key/value block whose values wrap instead of being cut: URLs must stay copyable."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    console.print(table)
