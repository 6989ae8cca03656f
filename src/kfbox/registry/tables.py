"""The registry's one table: every entity kind is a row, discriminated by ``family``/``kind``.

One table keeps ids numeric and unique across kinds (the client only sees decimal
strings), and lets the database enforce the API's uniqueness rules directly:

* ``(family, kind, scope, name)`` unique -- a version name within its model, an artifact name
  within its version and artifact type (a model-artifact and a doc-artifact may share one, as
  upstream), a model name globally (``scope`` is the parent id, 0 for none);
* ``(family, external_id)`` unique -- externalId within a kind family.

Type-specific fields live in the ``attrs`` JSON column under their wire names, custom
properties in ``custom`` (``{"key": {"metadataType": ..., "<x>_value": ...}}``), so
filterQuery can reach both with the dialect's JSON operators and bound parameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kfbox.db import Base
from kfbox.names import NAME_MAX

# names compare byte-exact on MySQL too ("Iris" and "iris" are two models), as on SQLite/PostgreSQL. The
# collation names its character set (utf8mb4), so the generic type says it all: the MySQL dialect (~10 ms
# of a server start, with its drivers' modules) is not imported where MySQL is not used
EXACT_TEXT = String(NAME_MAX).with_variant(String(NAME_MAX, collation="utf8mb4_bin"), "mysql", "mariadb")


class Resource(Base):
    __tablename__ = "registry_resources"
    __table_args__ = (
        UniqueConstraint("family", "kind", "scope", "name"),
        UniqueConstraint("family", "external_id"),
        Index("ix_registry_resources_family_scope_created", "family", "scope", "created_ms", "id"),
        Index("ix_registry_resources_family_created", "family", "created_ms", "id"),
        Index("ix_registry_resources_family_updated", "family", "updated_ms", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    family: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[int] = mapped_column(Integer, default=0)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("registry_resources.id"), nullable=True)
    name: Mapped[str | None] = mapped_column(EXACT_TEXT, nullable=True)
    external_id: Mapped[str | None] = mapped_column(EXACT_TEXT, nullable=True)
    state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON)
    custom: Mapped[dict[str, Any]] = mapped_column(JSON)
