"""Registry: an entity's name is unique per (family, kind, scope), no longer per (family, scope).

Upstream keeps artifact names unique per artifact type (MLMD's and its own schema's unique
``(type_id, name)``, the name prefixed with the parent's id), so a model version may hold a
model-artifact and a doc-artifact of one name; kfbox refused the second. Every other family has
one kind, so its rule is unchanged.

Revision ID: registry_0002
Revises: registry_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "registry_0002"
down_revision = "registry_0001"
branch_labels = None
depends_on = None

TABLE = "registry_resources"
PER_FAMILY = "uq_registry_resources_family_scope_name"
PER_KIND = "uq_registry_resources_family_kind_scope_name"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(PER_FAMILY, type_="unique")
        batch.create_unique_constraint(PER_KIND, ["family", "kind", "scope", "name"])


def downgrade() -> None:
    resources = sa.table(TABLE, sa.column("family", sa.String), sa.column("scope", sa.Integer),
                         sa.column("name", sa.String))
    shared = op.get_bind().execute(
        sa.select(resources.c.family, resources.c.scope, resources.c.name)
        .where(resources.c.name.is_not(None))
        .group_by(resources.c.family, resources.c.scope, resources.c.name)
        .having(sa.func.count() > 1).limit(5)).all()
    if shared:  # the old rule cannot hold them: say which, instead of the database's IntegrityError
        names = ", ".join(f"{row.name!r} under parent {row.scope}" for row in shared)
        raise RuntimeError(f"Cannot downgrade registry_0002: artifacts of different types share a name ({names}); "
                           "rename or delete one of each pair first.")
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(PER_KIND, type_="unique")
        batch.create_unique_constraint(PER_FAMILY, ["family", "scope", "name"])
