"""Apply every subsystem's Alembic migrations.

Each subsystem keeps its revisions in ``kfbox/<subsystem>/migrations/`` as its own
branch (``branch_labels = ("<subsystem>",)``, first ``down_revision = None``), so the
subsystems grow their schemas without stepping on each other; start-up upgrades to
``heads``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

PACKAGE = Path(__file__).resolve().parent.parent


def version_locations() -> list[str]:
    return sorted(str(p) for p in PACKAGE.glob("*/migrations") if p.is_dir() and p.parent.name != "db")


def alembic_config(engine: Engine | None = None) -> Config:
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
    command.upgrade(alembic_config(engine), "heads")
