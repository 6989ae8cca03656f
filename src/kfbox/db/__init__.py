"""Metadata storage: one SQLAlchemy engine, Alembic migrations from every subsystem."""

from kfbox.db.base import Base
from kfbox.db.database import Database

__all__ = ["Base", "Database"]
