"""Serving's tables: each InferenceService as applied, and its numbered revisions."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kfbox.db import Base


class ServiceRow(Base):
    """One InferenceService: the manifest last applied and which revisions take traffic."""

    __tablename__ = "serving_inference_services"
    __table_args__ = (UniqueConstraint("namespace", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    manifest: Mapped[str] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    latest_revision: Mapped[int] = mapped_column(Integer)
    stable_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The last revision rolled out to 100%; the canary is ``latest`` when they differ."""
    canary_percent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class RevisionRow(Base):
    """An immutable predictor spec; a changed spec makes revision N+1."""

    __tablename__ = "serving_revisions"
    __table_args__ = (UniqueConstraint("service_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("serving_inference_services.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    predictor: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
