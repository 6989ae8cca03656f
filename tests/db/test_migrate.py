"""Start-up's schema check: the heads read from the revision files' text are Alembic's own heads,
a fresh database is upgraded to them, and a current one starts without importing Alembic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _schema(engine: Any) -> dict[str, Any]:
    """Everything a migration can name or depend on: columns, keys, indexes, constraints."""
    from sqlalchemy import inspect

    found = inspect(engine)
    return {table: {
        "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")), c.get("autoincrement"))
                    for c in found.get_columns(table)],
        "primary key": found.get_pk_constraint(table),
        "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table)),
        "unique": sorted((u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)),
        "foreign keys": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"],
                                tuple(f["referred_columns"]), str(f.get("options")))
                               for f in found.get_foreign_keys(table)),
        "checks": sorted((c["name"], c["sqltext"]) for c in found.get_check_constraints(table)),
    } for table in sorted(found.get_table_names())}


def _drop_everything(engine: Any) -> None:
    from sqlalchemy import MetaData

    everything = MetaData()
    everything.reflect(engine)
    everything.drop_all(engine)


def test_a_fresh_database_gets_the_schema_the_migrations_build(database_url: str) -> None:
    """Start-up creates an empty database from the models and stamps it; Alembic's migrations must
    build the very same schema, or a later migration would meet names it does not expect."""
    from alembic import command

    db = Database(database_url)
    try:
        db.upgrade()
        assert current_revisions(db.engine) == known_heads()
        created = _schema(db.engine)
        _drop_everything(db.engine)
        command.upgrade(alembic_config(db.engine), "heads")
        assert _schema(db.engine) == created
    finally:
        db.dispose()


def test_a_fresh_database_created_from_the_models_takes_alembic_downgrades_and_upgrades(tmp_path: Path) -> None:
    """The stamp is Alembic's own: every migration runs backwards from it and forwards again."""
    from alembic import command

    db = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    try:
        db.upgrade()
        command.downgrade(alembic_config(db.engine), "base")
        assert current_revisions(db.engine) == set()
        command.upgrade(alembic_config(db.engine), "heads")
        assert current_revisions(db.engine) == known_heads()
    finally:
        db.dispose()


def test_a_database_at_old_revisions_is_upgraded_with_its_rows(tmp_path: Path) -> None:
    """A home from an earlier kfbox (each branch at its first revision, with a row) goes through
    Alembic to the heads, keeping its data, and ends with the schema a fresh home gets."""
    from alembic import command
    from sqlalchemy import text

    fresh = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    old = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        fresh.upgrade()
        command.upgrade(alembic_config(old.engine), "pipelines_0001")
        command.upgrade(alembic_config(old.engine), "registry_0001")
        command.upgrade(alembic_config(old.engine), "serving_0001")
        with old.engine.begin() as conn:
            conn.execute(text("INSERT INTO serving_inference_services (namespace, name, manifest, generation, "
                              "latest_revision, created_at, updated_at) VALUES ('default', 'iris', '{}', 1, 1, 0, 0)"))
        old.upgrade()
        assert current_revisions(old.engine) == known_heads()
        assert _schema(old.engine) == _schema(fresh.engine)
        with old.engine.connect() as conn:
            row = conn.execute(text("SELECT name, resource_version FROM serving_inference_services")).one()
        assert tuple(row) == ("iris", 0)
    finally:
        fresh.dispose()
        old.dispose()


def test_serving_times_move_to_milliseconds_and_back(database_url: str) -> None:
    """serving_0003: float seconds become epoch ms (kfbox's one unit) with their values, a service from
    before uids keeps the uid it was shown, and the downgrade gives seconds back."""
    import uuid

    from alembic import command
    from sqlalchemy import text

    db = Database(database_url)
    try:
        config = alembic_config(db.engine)
        command.upgrade(config, "serving_0002")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO serving_inference_services (namespace, name, manifest, generation, "
                              "latest_revision, created_at, updated_at, uid) VALUES "
                              "('default', 'old', '{}', 1, 1, 1000.5, 2000.25, NULL), "
                              "('default', 'new', '{}', 1, 1, 3000, 3000, 'u-1')"))
            conn.execute(text("INSERT INTO serving_namespaces (name, uid, resource_version, labels, created_at) "
                              "VALUES ('team', 'u-2', 1, '{}', 4000.125)"))
        command.upgrade(config, "serving_0003")
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT name, created_ms, updated_ms, uid FROM serving_inference_services "
                                     "ORDER BY name")).all()
            namespace = conn.execute(text("SELECT created_ms FROM serving_namespaces")).scalar_one()
        legacy = str(uuid.uuid5(uuid.NAMESPACE_URL, "default/old/1000.5"))
        assert [tuple(r) for r in rows] == [("new", 3000000, 3000000, "u-1"), ("old", 1000500, 2000250, legacy)]
        assert namespace == 4000125
        command.downgrade(config, "serving_0002")
        with db.engine.connect() as conn:
            back = conn.execute(text("SELECT created_at FROM serving_inference_services WHERE name = 'old'"))
            assert back.scalar_one() == 1000.5
    finally:
        db.dispose()


def test_registry_artifact_names_become_unique_per_type_with_their_rows(database_url: str) -> None:
    """registry_0002 on a database made at registry_0001 with a model, a version and its artifact in it: the rows
    and their parent links stay (on SQLite the table is rebuilt with foreign keys off, and back on after), a
    doc-artifact may then share the model-artifact's name, and the downgrade refuses while two do."""
    import pytest
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    insert = text("INSERT INTO registry_resources (id, family, kind, scope, parent_id, name, created_ms, updated_ms, "
                  "attrs, custom) VALUES (:id, :family, :kind, :scope, :parent, :name, 1, 1, '{}', '{}')")
    model = {"id": 1, "family": "registered_model", "kind": "registered_model", "scope": 0, "parent": None,
             "name": "iris"}
    version = {"id": 2, "family": "model_version", "kind": "model_version", "scope": 1, "parent": 1, "name": "v1"}
    weights = {"id": 3, "family": "artifact", "kind": "model-artifact", "scope": 2, "parent": 2, "name": "weights"}
    card = {**weights, "id": 4, "kind": "doc-artifact"}
    db = Database(database_url)
    try:
        config = alembic_config(db.engine)
        command.upgrade(config, "registry_0001")
        with db.engine.begin() as conn:
            conn.execute(insert, [model, version, weights])
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(insert, card)
        command.upgrade(config, "registry_0002")
        with db.engine.begin() as conn:
            rows = conn.execute(text("SELECT id, kind, parent_id, name FROM registry_resources ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, "registered_model", None, "iris"), (2, "model_version", 1, "v1"),
                                                (3, "model-artifact", 2, "weights")]
            conn.execute(insert, card)
            if db.engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1, "on again after the migration"
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(insert, {**card, "id": 5})
        with pytest.raises(RuntimeError, match="'weights' under parent 2"):
            command.downgrade(config, "registry_0001")
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM registry_resources WHERE id = 4"))
        command.downgrade(config, "registry_0001")
        assert current_revisions(db.engine) == {"registry_0001"}
    finally:
        db.dispose()
