"""serving: times in epoch milliseconds (BigInteger, created_ms/updated_ms), as every other kfbox table

Float seconds were the one exception (and a 4-byte FLOAT on MySQL, a resolution of minutes).
Services from before serving_0002 have no uid and took one derived from the float seconds: it is
written down first, so their uid does not change with the unit.

Revision ID: serving_0003
Revises: serving_0002
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "serving_0003"
down_revision = "serving_0002"
branch_labels = None
depends_on = None

COLUMNS = {"serving_inference_services": ("created_ms", "updated_ms"), "serving_revisions": ("created_ms",),
           "serving_namespaces": ("created_ms",)}


def _retype(to_type: sa.types.TypeEngine[Any], old: str, new: str) -> None:
    """Every time column to ``to_type``, its name's ``old`` suffix to ``new`` (created_at <-> created_ms)."""
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column.replace("_ms", old), new_column_name=column.replace("_ms", new),
                                   type_=to_type, existing_nullable=False)


def _rescale(to_ms: bool, suffix: str) -> None:
    """Seconds to whole ms, or ms to seconds, while the columns are floats."""
    for table, names in COLUMNS.items():
        columns = [name.replace("_ms", suffix) for name in names]
        t = sa.table(table, *(sa.column(c, sa.Float) for c in columns))
        op.execute(t.update().values({c: sa.func.round(t.c[c] * 1000) if to_ms else t.c[c] / 1000
                                      for c in columns}))


def upgrade() -> None:
    services = sa.table("serving_inference_services", sa.column("id", sa.Integer), sa.column("namespace", sa.String),
                        sa.column("name", sa.String), sa.column("created_at", sa.Float), sa.column("uid", sa.String))
    bind = op.get_bind()
    for row in bind.execute(sa.select(services).where(services.c.uid.is_(None))).all():
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{row.namespace}/{row.name}/{row.created_at}"))
        bind.execute(services.update().where(services.c.id == row.id).values(uid=uid))
    _rescale(True, "_at")
    _retype(sa.BigInteger(), "_at", "_ms")


def downgrade() -> None:
    _retype(sa.Float(), "_ms", "_at")
    _rescale(False, "_at")
