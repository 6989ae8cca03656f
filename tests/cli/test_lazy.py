"""The lazy root group: ``kfbox --help`` lists every noun without importing it, and the table it
lists from matches the commands the modules declare (so help text cannot drift)."""

from __future__ import annotations

import json
import subprocess
import sys

import typer.main

from kfbox.cli.main import Nouns, app


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


def test_the_table_matches_the_commands_the_modules_declare() -> None:
    group = Nouns(name="kfbox")
    group.load_all()
    assert sorted(group.commands) == sorted(Nouns.nouns), "a module declares a command the table lacks"
    for name, (_, short_help) in Nouns.nouns.items():
        assert _first_paragraph(group.commands[name].help) == short_help, name


def test_help_lists_every_noun_and_imports_none() -> None:
    code = (
        "import sys, json, contextlib, io\n"
        "from kfbox.cli.main import app\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        app(['--help'], prog_name='kfbox')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps({'help': out.getvalue(), 'modules': sorted(sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}, check=True)
    result = json.loads(proc.stdout)
    for name in Nouns.nouns:
        assert f" {name} " in result["help"], name
    loaded = {m for m in result["modules"] if m.startswith("kfbox.cli.")} - {"kfbox.cli.main", "kfbox.cli.lazy"}
    assert loaded == set(), loaded
    assert "httpx" not in result["modules"]


def test_a_noun_runs_after_its_module_loads_on_demand() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["secrets", "--help"])
    assert result.exit_code == 0, result.output
    assert "Secrets for use_secret_as_env" in result.output
    assert "kfbox.cli.secrets" in sys.modules
    command = typer.main.get_command(app)
    assert command.get_command(typer.Context(command), "nosuch") is None  # type: ignore[attr-defined]


def test_a_typo_is_answered_with_the_nearest_noun_even_unloaded() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["schedles"])
    assert result.exit_code == 2
    assert "Did you mean 'schedules'?" in result.output
