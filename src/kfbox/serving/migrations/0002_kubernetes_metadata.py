"""serving: Kubernetes metadata (uid, resourceVersion, managedFields), namespaces

Revision ID: serving_0002
Revises: serving_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "serving_0002"
down_revision = "serving_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("serving_inference_services") as batch:
        batch.add_column(sa.Column("uid", sa.String(36), nullable=True))
        batch.add_column(sa.Column("resource_version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("managed_fields", sa.Text, nullable=True))
    op.create_table(
        "serving_resource_counter",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("value", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_serving_resource_counter"),
    )
    op.create_table(
        "serving_namespaces",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("resource_version", sa.Integer, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_serving_namespaces"),
    )


def downgrade() -> None:
    op.drop_table("serving_namespaces")
    op.drop_table("serving_resource_counter")
    with op.batch_alter_table("serving_inference_services") as batch:
        batch.drop_column("managed_fields")
        batch.drop_column("resource_version")
        batch.drop_column("uid")
