"""``print_table``: a narrow terminal wraps a long cell instead of cutting it (a cut name or URL is lost)."""

from __future__ import annotations

import os
import subprocess
import sys

NAME, URL = "kubeflow-user-example-com", "http://127.0.0.1:8080/serving/kubeflow-user-example-com/sklearn-inference"


def column_text(table: str, index: int) -> str:
    """The text of one column, its wrapped lines joined."""
    cells = [line.split("\u2502")[index + 1].strip() for line in table.splitlines() if line.startswith("\u2502")]
    return "".join(cells)


def test_cells_fold_in_a_narrow_terminal() -> None:
    code = ("from kfbox.cli.output import print_table\n"
            f"print_table(None, ['namespace', 'url', 'ready'], [[{NAME!r}, {URL!r}, 'True']])")
    env = {**os.environ, "COLUMNS": "50"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "\u2026" not in done.stdout
    assert column_text(done.stdout, 0) == NAME and column_text(done.stdout, 1) == URL
    assert max(len(line) for line in done.stdout.splitlines()) <= 50
