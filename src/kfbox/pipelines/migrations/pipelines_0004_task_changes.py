"""Pipelines: a change counter per run and per task (a live page's poll reads only the tasks that
changed), and runs indexed by experiment then creation (an experiment's latest runs without a sort).

Revision ID: pipelines_0004_task_changes
Revises: pipelines_0003_task_details
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pipelines_0004_task_changes"
down_revision = "pipelines_0003_task_details"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipelines_runs") as batch:
        batch.add_column(sa.Column("task_seq", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("pipelines_tasks") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_pipelines_tasks_run_seq", "pipelines_tasks", ["run_id", "seq"])
    op.create_index("ix_pipelines_runs_experiment_created", "pipelines_runs", ["experiment_id", "created_ms"])
    op.drop_index("ix_pipelines_runs_experiment", table_name="pipelines_runs")


def downgrade() -> None:
    op.create_index("ix_pipelines_runs_experiment", "pipelines_runs", ["experiment_id"])
    op.drop_index("ix_pipelines_runs_experiment_created", table_name="pipelines_runs")
    op.drop_index("ix_pipelines_tasks_run_seq", table_name="pipelines_tasks")
    with op.batch_alter_table("pipelines_tasks") as batch:
        batch.drop_column("seq")
    with op.batch_alter_table("pipelines_runs") as batch:
        batch.drop_column("task_seq")
