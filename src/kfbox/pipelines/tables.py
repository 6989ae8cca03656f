"""The pipelines subsystem's tables: the history a KFP cluster keeps, in our own database.

Times are epoch milliseconds (``BigInteger``) so ordering and paging behave the same on
SQLite, PostgreSQL and MySQL. Specs and outputs are JSON columns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kfbox.db import Base

ID = 36
NAME = 255


class Experiment(Base):
    __tablename__ = "pipelines_experiments"
    __table_args__ = (UniqueConstraint("namespace", "display_name", name="uq_pipelines_experiments_namespace"),)

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(NAME))
    description: Mapped[str] = mapped_column(Text, default="")
    namespace: Mapped[str] = mapped_column(String(NAME), default="")
    storage_state: Mapped[str] = mapped_column(String(32), default="AVAILABLE")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_run_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Pipeline(Base):
    __tablename__ = "pipelines_pipelines"
    __table_args__ = (UniqueConstraint("namespace", "display_name", name="uq_pipelines_pipelines_namespace"),)

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(NAME))
    description: Mapped[str] = mapped_column(Text, default="")
    namespace: Mapped[str] = mapped_column(String(NAME), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class PipelineVersion(Base):
    __tablename__ = "pipelines_versions"
    __table_args__ = (UniqueConstraint("pipeline_id", "display_name", name="uq_pipelines_versions_pipeline_id"),
                      Index("ix_pipelines_versions_pipeline_created", "pipeline_id", "created_ms"))

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    pipeline_id: Mapped[str] = mapped_column(ForeignKey("pipelines_pipelines.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(NAME))
    description: Mapped[str] = mapped_column(Text, default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    pipeline_spec: Mapped[dict[str, Any]] = mapped_column(JSON)


class Run(Base):
    __tablename__ = "pipelines_runs"
    __table_args__ = (Index("ix_pipelines_runs_created", "created_ms"),
                      Index("ix_pipelines_runs_state", "state"),
                      Index("ix_pipelines_runs_experiment_created", "experiment_id", "created_ms"))

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(ID))
    display_name: Mapped[str] = mapped_column(String(NAME))
    description: Mapped[str] = mapped_column(Text, default="")
    pipeline_id: Mapped[str | None] = mapped_column(String(ID), nullable=True)
    pipeline_version_id: Mapped[str | None] = mapped_column(String(ID), nullable=True)
    pipeline_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    pipeline_root: Mapped[str] = mapped_column(Text, default="")
    service_account: Mapped[str] = mapped_column(String(NAME), default="")
    storage_state: Mapped[str] = mapped_column(String(32), default="AVAILABLE")
    state: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    state_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    scheduled_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # bumped by every write to the run's tasks, which take its new value as their ``seq``: a live
    # page asks for the tasks with a ``seq`` above the one it saw (writes to one run are serialised
    # by this row's lock, so the counter follows commit order)
    task_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Task(Base):
    __tablename__ = "pipelines_tasks"
    __table_args__ = (Index("ix_pipelines_tasks_run", "run_id", "created_ms"),
                      Index("ix_pipelines_tasks_run_seq", "run_id", "seq"))

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipelines_runs.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(String(ID), nullable=True)
    name: Mapped[str] = mapped_column(String(NAME))
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # "container", "importer" or "dag"
    state: Mapped[str] = mapped_column(String(32))
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    started_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # inputs, state_history, pod name, attempts, warnings (ignored resource settings), skip reason
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # the run's task_seq at its last write


class Artifact(Base):
    __tablename__ = "pipelines_artifacts"
    __table_args__ = (Index("ix_pipelines_artifacts_run", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipelines_runs.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(ID))
    direction: Mapped[str] = mapped_column(String(8))  # "output" (inputs are outputs of upstream tasks)
    key: Mapped[str] = mapped_column(String(NAME))
    name: Mapped[str] = mapped_column(String(NAME))
    uri: Mapped[str] = mapped_column(Text)
    schema_title: Mapped[str] = mapped_column(String(NAME))
    artifact_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)
