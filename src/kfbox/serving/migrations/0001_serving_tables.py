"""serving: inference services and revisions

Revision ID: serving_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "serving_0001"
down_revision = None
branch_labels = ("serving",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serving_inference_services",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("latest_revision", sa.Integer, nullable=False),
        sa.Column("stable_revision", sa.Integer, nullable=True),
        sa.Column("canary_percent", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_serving_inference_services"),
        sa.UniqueConstraint("namespace", "name", name="uq_serving_inference_services_namespace"),
    )
    op.create_table(
        "serving_revisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("predictor", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_serving_revisions"),
        sa.ForeignKeyConstraint(["service_id"], ["serving_inference_services.id"], ondelete="CASCADE",
                                name="fk_serving_revisions_service_id_serving_inference_services"),
        sa.UniqueConstraint("service_id", "number", name="uq_serving_revisions_service_id"),
    )


def downgrade() -> None:
    op.drop_table("serving_revisions")
    op.drop_table("serving_inference_services")
