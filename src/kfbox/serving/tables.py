"""Serving's tables: each InferenceService as applied, its numbered revisions, namespaces, and the
resourceVersion counter that orders every change (Kubernetes' optimistic concurrency and watch)."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kfbox.db import Base


class ServiceRow(Base):
    """One InferenceService: the manifest last applied and which revisions take traffic."""

    __tablename__ = "serving_inference_services"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_serving_inference_services_namespace"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    manifest: Mapped[str] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    latest_revision: Mapped[int] = mapped_column(Integer)
    stable_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The last revision rolled out to 100%; the canary is ``latest`` when they differ."""
    canary_percent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    resource_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    managed_fields: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON: server-side apply's field owners (``metadata.managedFields``)."""


class RevisionRow(Base):
    """An immutable predictor spec; a changed spec makes revision N+1."""

    __tablename__ = "serving_revisions"
    __table_args__ = (UniqueConstraint("service_id", "number", name="uq_serving_revisions_service_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("serving_inference_services.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    predictor: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CounterRow(Base):
    """One row: the last resourceVersion handed out (every create, update, status change, delete)."""

    __tablename__ = "serving_resource_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(Integer)


class NamespaceRow(Base):
    """A namespace created through ``/api/v1/namespaces`` (``default`` always exists)."""

    __tablename__ = "serving_namespaces"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    uid: Mapped[str] = mapped_column(String(36))
    resource_version: Mapped[int] = mapped_column(Integer)
    labels: Mapped[str] = mapped_column(Text, default="{}")
    created_ms: Mapped[int] = mapped_column(BigInteger)
