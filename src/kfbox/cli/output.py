"""Printing results: ``--output table`` (rich) or ``--output json`` (for scripts).

``console`` and ``err_console`` are made on first use: importing rich (~30 ms) is paid by the commands
that print through it, not by ``kfbox up``, whose server prints nothing but its one start line.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class Output(enum.StrEnum):
    table = "table"
    json = "json"


def __getattr__(name: str) -> Console:
    if name == "console":
        return _console(stderr=False)
    if name == "err_console":
        return _console(stderr=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def print_json(data: Any) -> None:
    _console(stderr=False).print_json(json.dumps(data, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns fold where the terminal is narrow: a name, an id or a URL cut to "kubeflow-\u2026" is lost, one
    wrapped onto two lines is still whole."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    _console(stderr=False).print(table)


def print_pairs(title: str | None, rows: Sequence[tuple[str, Any]]) -> None:
    """A key/value block whose values wrap instead of being cut: URLs must stay copyable."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, "" if value is None else str(value))
    _console(stderr=False).print(table)
