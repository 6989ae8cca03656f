"""Pipelines: recurring runs (and the runs each one started), secrets and config maps.

Revision ID: pipelines_0002_schedules_secrets
Revises: pipelines_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pipelines_0002_schedules_secrets"
down_revision = "pipelines_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines_recurring_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("pipeline_id", sa.String(36), nullable=True),
        sa.Column("pipeline_version_id", sa.String(36), nullable=True),
        sa.Column("pipeline_spec", sa.JSON(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("pipeline_root", sa.Text(), nullable=False),
        sa.Column("service_account", sa.String(255), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("cron", sa.String(255), nullable=True),
        sa.Column("interval_seconds", sa.BigInteger(), nullable=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_ms", sa.BigInteger(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("no_catchup", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_tick_ms", sa.BigInteger(), nullable=True),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pipelines_recurring_runs"),
    )
    op.create_index("ix_pipelines_recurring_runs_created", "pipelines_recurring_runs", ["created_ms"])
    op.create_table(
        "pipelines_recurring_run_runs",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("recurring_run_id", sa.String(36), nullable=False),
        sa.Column("scheduled_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_pipelines_recurring_run_runs"),
        sa.ForeignKeyConstraint(["recurring_run_id"], ["pipelines_recurring_runs.id"], ondelete="CASCADE",
                                name="fk_pipelines_recurring_run_runs_schedule"),
    )
    op.create_index("ix_pipelines_recurring_run_runs_recurring", "pipelines_recurring_run_runs",
                    ["recurring_run_id"])
    op.create_table(
        "pipelines_secrets",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_pipelines_secrets"),
    )


def downgrade() -> None:
    for table in ("pipelines_secrets", "pipelines_recurring_run_runs", "pipelines_recurring_runs"):
        op.drop_table(table)
