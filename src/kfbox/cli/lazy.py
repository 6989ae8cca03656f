"""A command group that imports a noun's module only when that noun runs.

``kfbox --help`` lists every noun from a table of (module, one-line help) without importing any of
them; ``kfbox models list`` imports ``kfbox.cli.models`` alone. Importing every noun cost ~0.5 s
per invocation (httpx, the cluster engine, the load tester) before this.
``tests/cli/test_lazy.py`` checks the table against the loaded commands, so the listing cannot drift.
"""

from __future__ import annotations

import importlib
from difflib import get_close_matches
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

# the click module typer uses (typer >= 0.24 vendors its own copy)
Context = Any


class LazyGroup(TyperGroup):
    """The root group: nouns from ``NOUNS`` (name -> (module, short help)), loaded on first use."""

    nouns: dict[str, tuple[str, str]] = {}
    """name -> (``module`` whose ``register(app)`` adds it, or ``module:function``, short help)."""
    _listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self.nouns, *(name for name in self.commands if name not in self.nouns)]

    def get_command(self, ctx: Context, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.nouns:
            module, short_help = self.nouns[cmd_name]
            if self._listing:
                # the help page needs a name and a line, not the command: no import
                return TyperCommand(cmd_name, help=short_help)
            self.load(module)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:
            # typer suggests from the loaded commands only; suggest from every noun
            message = getattr(exc, "message", None)
            if isinstance(message, str) and args and "Did you mean" not in message:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    exc.message = f"{message.rstrip('.')}. Did you mean {', '.join(repr(m) for m in matches)}?"  # type: ignore[attr-defined]
            raise

    def load(self, target: str) -> None:
        """Import one noun module and add the commands its ``register`` declares
        (``module:function`` adds that one function as a command)."""
        module_name, _, function = target.partition(":")
        module = importlib.import_module(module_name)
        holder = typer.Typer()
        if function:
            holder.command()(getattr(module, function))
        else:
            module.register(holder)
        group = typer.main.get_group(holder)
        for name, command in group.commands.items():
            self.commands.setdefault(name, command)

    def load_all(self) -> None:
        for module in dict.fromkeys(module for module, _ in self.nouns.values()):
            self.load(module)

    def format_help(self, ctx: Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
