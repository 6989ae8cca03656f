"""The package's public face: its version is the installed distribution's, and it ships its type hints."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import subprocess
import sys

import kfbox


def test_version_is_the_installed_distributions() -> None:
    assert kfbox.__version__ == importlib.metadata.version("kfbox")
    out = subprocess.run([sys.executable, "-m", "kfbox", "--version"], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == importlib.metadata.version("kfbox")


def test_importing_kfbox_does_not_scan_the_installed_distributions() -> None:
    code = "import sys, kfbox\nprint('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_the_package_is_marked_typed() -> None:
    """PEP 561: without ``py.typed`` mypy ignores kfbox's hints in users' code."""
    assert (importlib.resources.files("kfbox") / "py.typed").is_file()
