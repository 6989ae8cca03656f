"""Registry: the resources table.

Revision ID: registry_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# names compare byte-exact on MySQL too ("Iris" and "iris" are two models), as on SQLite/PostgreSQL
EXACT_TEXT = sa.String(255).with_variant(mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql",
                                         "mariadb")

revision = "registry_0001"
down_revision = None
branch_labels = ("registry",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_resources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("scope", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("name", EXACT_TEXT, nullable=True),
        sa.Column("external_id", EXACT_TEXT, nullable=True),
        sa.Column("state", sa.String(32), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("attrs", sa.JSON(), nullable=False),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_resources"),
        sa.ForeignKeyConstraint(["parent_id"], ["registry_resources.id"],
                                name="fk_registry_resources_parent_id_registry_resources"),
        sa.UniqueConstraint("family", "scope", "name", name="uq_registry_resources_family_scope_name"),
        sa.UniqueConstraint("family", "external_id", name="uq_registry_resources_family_external_id"),
    )
    op.create_index("ix_registry_resources_family_scope_created", "registry_resources",
                    ["family", "scope", "created_ms", "id"])
    op.create_index("ix_registry_resources_family_created", "registry_resources", ["family", "created_ms", "id"])
    op.create_index("ix_registry_resources_family_updated", "registry_resources", ["family", "updated_ms", "id"])


def downgrade() -> None:
    op.drop_table("registry_resources")
