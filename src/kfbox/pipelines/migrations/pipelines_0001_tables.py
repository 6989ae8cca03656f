"""Pipelines: experiments, pipelines, versions, runs, tasks, artifacts.

Revision ID: pipelines_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pipelines_0001"
down_revision = None
branch_labels = ("pipelines",)
depends_on = None


def _pk(table: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint("id", name=f"pk_{table}")


def upgrade() -> None:
    op.create_table(
        "pipelines_experiments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("storage_state", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_run_ms", sa.BigInteger(), nullable=True),
        _pk("pipelines_experiments"),
        sa.UniqueConstraint("namespace", "display_name", name="uq_pipelines_experiments_namespace"),
    )
    op.create_table(
        "pipelines_pipelines",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        _pk("pipelines_pipelines"),
        sa.UniqueConstraint("namespace", "display_name", name="uq_pipelines_pipelines_namespace"),
    )
    op.create_table(
        "pipelines_versions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("pipeline_id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("pipeline_spec", sa.JSON(), nullable=False),
        _pk("pipelines_versions"),
        sa.ForeignKeyConstraint(["pipeline_id"], ["pipelines_pipelines.id"], ondelete="CASCADE",
                                name="fk_pipelines_versions_pipeline_id_pipelines_pipelines"),
        sa.UniqueConstraint("pipeline_id", "display_name", name="uq_pipelines_versions_pipeline_id"),
    )
    op.create_index("ix_pipelines_versions_pipeline_created", "pipelines_versions", ["pipeline_id", "created_ms"])
    op.create_table(
        "pipelines_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("pipeline_id", sa.String(36), nullable=True),
        sa.Column("pipeline_version_id", sa.String(36), nullable=True),
        sa.Column("pipeline_spec", sa.JSON(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("pipeline_root", sa.Text(), nullable=False),
        sa.Column("service_account", sa.String(255), nullable=False),
        sa.Column("storage_state", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("state_history", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_ms", sa.BigInteger(), nullable=True),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        _pk("pipelines_runs"),
    )
    op.create_index("ix_pipelines_runs_created", "pipelines_runs", ["created_ms"])
    op.create_index("ix_pipelines_runs_state", "pipelines_runs", ["state"])
    op.create_index("ix_pipelines_runs_experiment", "pipelines_runs", ["experiment_id"])
    op.create_table(
        "pipelines_tasks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        _pk("pipelines_tasks"),
        sa.ForeignKeyConstraint(["run_id"], ["pipelines_runs.id"], ondelete="CASCADE",
                                name="fk_pipelines_tasks_run_id_pipelines_runs"),
    )
    op.create_index("ix_pipelines_tasks_run", "pipelines_tasks", ["run_id", "created_ms"])
    op.create_table(
        "pipelines_artifacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("schema_title", sa.String(255), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        _pk("pipelines_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["pipelines_runs.id"], ondelete="CASCADE",
                                name="fk_pipelines_artifacts_run_id_pipelines_runs"),
    )
    op.create_index("ix_pipelines_artifacts_run", "pipelines_artifacts", ["run_id"])


def downgrade() -> None:
    for table in ("pipelines_artifacts", "pipelines_tasks", "pipelines_runs", "pipelines_versions",
                  "pipelines_pipelines", "pipelines_experiments"):
        op.drop_table(table)
