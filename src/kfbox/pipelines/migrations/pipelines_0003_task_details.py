"""Pipelines: task details (inputs, state history, pod name, attempts, warnings) for the run record.

Revision ID: pipelines_0003_task_details
Revises: pipelines_0002_schedules_secrets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pipelines_0003_task_details"
down_revision = "pipelines_0002_schedules_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pipelines_tasks", sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("pipelines_tasks", "details")
