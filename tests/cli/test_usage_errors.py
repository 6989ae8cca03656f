"""Bad invocations through the real console script (``.venv/bin/kfbox``), as a user types them:
the usage text, a "did you mean" where one is close, exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

KFBOX = Path(sys.executable).parent / "kfbox"

# argv -> what the error must say
BAD = {
    ("nonsense",): "No such command 'nonsense'",
    ("runs", "lst"): "Did you mean 'list'?",
    ("run", "--bogus"): "No such option: --bogus",
    ("runs", "list", "--bogus"): "No such option: --bogus",
    ("runs", "list", "--limt", "3"): "(Possible options: --limit)",  # click's "did you mean" for options
    ("serve", "aply"): "Did you mean 'apply'?",
    ("up", "--port", "eighty"): "Invalid value for '--port'",
    ("cluster", "doctr"): "Did you mean 'doctor'?",
    ("loadtest",): "Missing argument",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every bad invocation at once (each is a fresh interpreter: ~0.5 s of imports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env.update(COLUMNS="200", KFBOX_HOME=str(tmp_path_factory.mktemp("home")))
    procs = {argv: subprocess.Popen([str(KFBOX), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env) for argv in BAD}
    out = {}
    for argv, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[argv] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("argv", list(BAD), ids=" ".join)
def test_bad_invocation_prints_usage_and_exits_2(results: dict[tuple[str, ...], subprocess.CompletedProcess[str]],
                                                 argv: tuple[str, ...]) -> None:
    result = results[argv]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Usage: kfbox" in result.stderr
    assert BAD[argv] in result.stderr


def test_version_needs_no_command() -> None:
    result = subprocess.run([str(KFBOX), "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip()
