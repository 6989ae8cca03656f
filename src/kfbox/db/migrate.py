"""Apply every subsystem's Alembic migrations.

Each subsystem keeps its revisions in ``kfbox/<subsystem>/migrations/`` as its own
branch (``branch_labels = ("<subsystem>",)``, first ``down_revision = None``), so the
subsystems grow their schemas without stepping on each other; start-up upgrades to
``heads``.

Start-up first compares the database's ``alembic_version`` rows with the heads read from the
revision files' text (``revision = ...``/``down_revision = ...``); only when they differ is
Alembic imported (~0.35 s, most of it SQLAlchemy's dialects for every backend) to upgrade.

An empty database (no ``alembic_version``, no table at all) is created from the models instead
(``metadata.create_all``) and stamped with the heads, as ``alembic stamp heads`` would: the same
schema the migrations build (``tests/db/test_migrate.py`` compares the two on every backend, so a
model and its migration cannot drift apart), for a fraction of the time. Later upgrades then run
through Alembic from that stamp like any other.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Engine, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

PACKAGE = Path(__file__).resolve().parent.parent
MODEL_MODULES = ("kfbox.pipelines.tables", "kfbox.pipelines.schedules", "kfbox.pipelines.secrets",
                 "kfbox.registry.tables", "kfbox.serving.tables")
"""Every module that declares tables the migrations create (a missing one fails the schema test)."""


def version_locations() -> list[str]:
    return sorted(str(p) for p in PACKAGE.glob("*/migrations") if p.is_dir() and p.parent.name != "db")


_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def known_heads() -> set[str] | None:
    """The head revisions of every branch, from the revision files' text; None when a file does
    not spell them as plain literals (then Alembic reads them)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for location in version_locations():
        for path in Path(location).glob("*.py"):
            if path.name.startswith("_"):
                continue
            found = {m[1]: m[2] for m in _ASSIGNMENT.finditer(path.read_text(encoding="utf-8"))}
            try:
                revision = ast.literal_eval(found["revision"])
                down = ast.literal_eval(found.get("down_revision", "None"))
            except (KeyError, ValueError, SyntaxError):
                return None
            if not isinstance(revision, str):
                return None
            revisions.add(revision)
            if isinstance(down, str):
                parents.add(down)
            elif isinstance(down, (tuple, list)):
                parents.update(down)
            elif down is not None:
                return None
    return revisions - parents


def current_revisions(engine: Engine) -> set[str] | None:
    """The revisions the database is stamped with; None when it has no ``alembic_version`` table."""
    try:
        with engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except DBAPIError:
        return None


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(PACKAGE / "db" / "migrations"))
    cfg.set_main_option("version_locations", " ".join(version_locations()))
    cfg.set_main_option("path_separator", "space")
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    if not version_locations():
        return
    heads = known_heads()
    current = current_revisions(engine)
    if heads and heads == current:
        return  # schema current: no Alembic import
    if heads and current is None and not inspect(engine).get_table_names():
        create_fresh(engine, heads)
        return
    from alembic import command

    command.upgrade(alembic_config(engine), "heads")


def create_fresh(engine: Engine, heads: set[str]) -> None:
    """Create every table of an empty database from the models and stamp it with ``heads``."""
    import importlib

    from kfbox.db.base import Base

    for module in MODEL_MODULES:
        importlib.import_module(module)
    with engine.begin() as conn:
        Base.metadata.create_all(conn, checkfirst=False)  # empty, checked above: no table to look for first
        # Alembic's own version table, as its MigrationContext declares it
        version = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                        PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
        version.create(conn)
        conn.execute(version.insert(), [{"version_num": head} for head in sorted(heads)])
