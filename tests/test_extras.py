"""Optional dependencies: a missing one is our error naming the extra to install, from the API down to the CLI.

"Missing" is real here: ``sys.modules[name] = None`` makes Python's import fail for that package exactly as
when it is not installed (``ModuleNotFoundError`` naming it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.errors import MissingExtra, Unsupported
from kfbox.extras import require
from kfbox.pipelines.importer import fetch_artifact
from kfbox.storage.uris import UriResolver


def test_require_returns_the_module_when_installed() -> None:
    assert require("json", extra="x", feature="JSON").dumps([1]) == "[1]"


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingExtra, match=r"pip install 'kfbox\[s3\]'") as info:
        require("boto3", extra="s3", feature="An s3:// model URI")
    assert isinstance(info.value, Unsupported) and info.value.status_code == 501
    assert "'boto3'" in str(info.value)


def test_a_missing_import_inside_an_installed_package_is_not_blamed_on_the_extra(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    (tmp_path / "kfbox_broken_pkg.py").write_text("import kfbox_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="kfbox_no_such_module"):
        require("kfbox_broken_pkg", extra="x", feature="A feature")


@pytest.mark.parametrize(("url", "driver", "extra"), [
    ("postgresql://postgres@127.0.0.1:5432/kfbox", "psycopg", "postgres"),
    ("mysql://root@127.0.0.1:3306/kfbox", "pymysql", "mysql"),
])
def test_a_database_url_without_its_driver_names_the_extra(url: str, driver: str, extra: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(MissingExtra, match=rf"'{driver}'.*pip install 'kfbox\[{extra}\]'"):
        Database(url)


def test_kfbox_up_with_postgresql_but_no_psycopg_says_what_to_install(tmp_path: Path) -> None:
    code = ("import sys\nsys.modules['psycopg'] = None\n"
            f"sys.argv = ['kfbox', 'up', '--port', '0', '--home', {str(tmp_path)!r}, "
            "'--db', 'postgresql://postgres@127.0.0.1:5432/kfbox']\n"
            "from kfbox.cli.main import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "pip install 'kfbox[postgres]'" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_s3_without_boto3_names_the_s3_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.load(home=tmp_path, s3_endpoint="http://127.0.0.1:9", s3_access_key="k", s3_secret_key="s")
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingExtra, match=r"s3:// model URI.*pip install 'kfbox\[s3\]'"):
        UriResolver(settings).localize("s3://models/iris/model.joblib")
    with pytest.raises(MissingExtra, match=r"dsl.importer s3:// URI.*pip install 'kfbox\[s3\]'"):
        fetch_artifact("s3://data/iris.csv", tmp_path / "dest", settings)


@pytest.mark.parametrize("module", ["sklearn", "model_registry"])
def test_kfbox_example_iris_without_the_examples_extra_says_what_to_install(module: str, tmp_path: Path) -> None:
    """Refused before any platform starts (none runs for this home afterwards)."""
    code = (f"import sys\nsys.modules[{module!r}] = None\n"
            f"sys.argv = ['kfbox', 'example', 'iris', '--home', {str(tmp_path)!r}]\n"
            "from kfbox.cli.main import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "pip install 'kfbox[examples]'" in done.stdout + done.stderr
    assert not (tmp_path / "server.json").exists()
