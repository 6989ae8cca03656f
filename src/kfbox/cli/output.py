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
