"""Start-up's schema check: the heads read from the revision files' text are Alembic's own heads,
a fresh database is upgraded to them, and a current one starts without importing Alembic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kfbox.db import Database
from kfbox.db.migrate import alembic_config, current_revisions, known_heads


def test_heads_read_from_the_files_are_alembics_heads() -> None:
    from alembic.script import ScriptDirectory

    assert known_heads() == set(ScriptDirectory.from_config(alembic_config()).get_heads())


def test_a_fresh_database_is_upgraded_to_the_heads(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    try:
        assert current_revisions(db.engine) is None
        db.upgrade()
        assert current_revisions(db.engine) == known_heads()
    finally:
        db.dispose()


def test_a_current_database_starts_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kfbox.db'}"
    db = Database(url)
    db.upgrade()
    db.dispose()
    code = ("import sys, json\nfrom kfbox.db import Database\n"
            f"db = Database({url!r})\ndb.upgrade()\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_a_stamp_other_than_the_heads_goes_to_alembic(tmp_path: Path) -> None:
    """A revision this code does not know (a newer kfbox's) is not skipped as current: Alembic
    reads the stamp and refuses, as it did before the check existed."""
    import pytest
    from alembic.util.exc import CommandError
    from sqlalchemy import text

    db = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    try:
        db.upgrade()
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('from_the_future')"))
        with pytest.raises(CommandError, match="from_the_future"):
            db.upgrade()
    finally:
        db.dispose()
