"""Alembic environment: runs against the engine kfbox hands over in ``config.attributes``.

On SQLite a batch migration rebuilds a table (copy, drop, rename), and dropping a table with
foreign keys on deletes its rows first, with their ``ON DELETE`` actions (SQLite's implicit
``DELETE FROM``): foreign keys are off while migrations run (the pragma is a no-op inside a
transaction, so it is set before one begins), ``PRAGMA foreign_key_check`` must find nothing
before the commit, and they are on again for the connection's next user.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from kfbox.db.base import Base


def _pragma(connection: Any, statement: str) -> list[Any]:
    """On the driver's connection: SQLAlchemy would begin a transaction first (kfbox's BEGIN event)."""
    cursor = connection.connection.driver_connection.cursor()
    try:
        return list(cursor.execute(statement).fetchall())
    finally:
        cursor.close()


engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all() if sqlite else []
            if broken:  # raised inside the transaction: the migration is rolled back
                raise RuntimeError(f"The migration left rows whose foreign keys point nowhere "
                                   f"(table, rowid, parent table, key): {[tuple(row) for row in broken[:10]]}")
        connection.commit()
    finally:
        if sqlite:
            connection.rollback()  # nothing open when the pragma runs (a failed migration's transaction)
            _pragma(connection, "PRAGMA foreign_keys=ON")
