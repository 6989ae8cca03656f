"""The xdist placement in tests/conftest.py: which modules of a package go to the worker holding its shared fixtures."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shared_fixtures, uses_any

CONFTEST = '''
@pytest.fixture(scope="package")  # one for the package
def shared_server(tmp_path_factory):
    ...


@pytest.fixture(scope="session")
@other_decorator
def s3_endpoint():
    ...


@pytest.fixture(scope="module")
def kfp_client(server):
    ...
'''


def test_package_and_session_fixtures_are_the_shared_ones(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    assert shared_fixtures(tmp_path / "conftest.py") == {"shared_server", "s3_endpoint"}
    assert shared_fixtures(tmp_path / "missing.py") == set()


def test_a_module_that_asks_for_one_is_grouped_unless_it_defines_its_own() -> None:
    names = {"shared_server", "s3_endpoint"}
    assert uses_any("def server(shared_server):\n    return shared_server\n", names)
    assert uses_any("def test_upload(s3_endpoint: str) -> None:\n    ...\n", names)
    assert not uses_any("def test_pure() -> None:\n    assert shared_servers == 1\n", names)
    assert not uses_any("def s3_endpoint():\n    ...\n\ndef test_x(s3_endpoint):\n    ...\n", names)
