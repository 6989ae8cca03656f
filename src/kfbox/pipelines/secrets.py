"""Secrets and config maps for kfp-kubernetes' ``use_secret_as_env/as_volume`` and
``use_config_map_as_env/as_volume``: what a cluster keeps in Kubernetes, kept in our database.

* A **secret**'s values are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256, from
  ``cryptography``). The key is ``KFBOX_SECRET_KEY`` when set (any string; a Fernet key is
  derived from it with HKDF-SHA256, so several homes sharing one PostgreSQL database can share
  it), else the file ``<home>/secret.key``, created on first use with mode 0600 and refused
  when others can read it. Key names are stored in clear so listings need no key.
* A **config map** is stored plain.
* Values never leave through ``repr``/``str`` (:class:`SecretData` prints key names only),
  logs or the API (which lists names and keys; only a config map's own GET shows values).

Interface (for the API, and for the engine when a task starts)::

    store = SecretStore.from_settings(db, settings)
    store.set("secret", "db", {"password": "s3cret"})            # replaces; merge=True adds keys
    store.get("secret", "db")["password"]                         # -> "s3cret"
    store.list("configmap")                                       # -> [Entry(name, keys, ...)]
    store.delete("secret", "db")

    # the engine, per task (kfbox.pipelines.secret_values, no SQLAlchemy): the executor's
    # kfp-kubernetes config (platform spec)
    env = task_env(store, executor_config)                        # {"PW": "s3cret", ...}
    volumes = write_task_volumes(store, executor_config, sandbox / "volumes")
    # -> {"/mnt/db": <folder with one file per key, 0600>}: map each mount path into the sandbox

A run's worker never touches the database, so the server *seals* what a run may use into its
job (encrypted with the same key: nothing in clear on disk) and the worker opens it::

    job["secrets"] = seal(store, run.pipeline_spec, run.parameters)     # server; None if unused
    source = SealedSecrets.open(job.get("secrets"), settings)           # worker (reads the key file)
    env = task_env(source, executor_config)                             # as with a store

``name_of`` reads the constant secret/config map name; an engine that resolves
``componentInputParameter`` names passes its own ``name_of``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from kfbox.clock import now_ms
from kfbox.db import Base, Database
from kfbox.errors import Conflict, InvalidInput, NotFound
from kfbox.pipelines.secret_values import (
    COMMANDS,
    ENV_FIELDS,
    KINDS,
    VOLUME_FIELDS,
    WORDS,
    Kind,
    SecretData,
    load_key,
    name_of,
)

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from kfbox.config import Settings

NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # a Kubernetes DNS-1123 subdomain
KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # a Kubernetes secret/config map key
MAX_BYTES = 1024 * 1024  # Kubernetes' limit per object


class StoredSecret(Base):
    __tablename__ = "pipelines_secrets"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    keys: Mapped[list[str]] = mapped_column(JSON)
    data: Mapped[str] = mapped_column(Text)  # a Fernet token (secret) or JSON (config map)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


@dataclasses.dataclass(frozen=True)
class Entry:
    kind: Kind
    name: str
    keys: list[str]
    created_ms: int
    updated_ms: int


def check_name(kind: Kind, name: str) -> str:
    if not isinstance(name, str) or len(name) > 253 or not NAME.match(name):
        raise InvalidInput(f"{WORDS[kind]} name {name!r} is not a valid Kubernetes name: lowercase letters, "
                           "digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters.")
    return name


def check_data(kind: Kind, data: Any) -> dict[str, str]:
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"A {WORDS[kind].lower()} needs data: an object of KEY: VALUE strings, at least one.")
    for key, value in data.items():
        if not isinstance(key, str) or len(key) > 253 or not KEY.match(key) or key in (".", ".."):
            raise InvalidInput(f"{WORDS[kind]} key {key!r} is not valid: use letters, digits, '-', '_' and '.' "
                               "(it becomes a file name in as_volume mounts).")
        if not isinstance(value, str):
            raise InvalidInput(f"{WORDS[kind]} key {key!r} must have a string value, not {type(value).__name__}.")
    if sum(len(k) + len(v.encode()) for k, v in data.items()) > MAX_BYTES:
        raise InvalidInput(f"{WORDS[kind]} data is over {MAX_BYTES} bytes (the Kubernetes limit); keep large files "
                           "in artifacts or a PVC instead.")
    return dict(data)


class SecretStore:
    """Secrets (encrypted) and config maps (plain); every method is one transaction."""

    def __init__(self, db: Database, key: Callable[[], bytes]) -> None:
        self.db = db
        self._key = key
        self._fernet: Fernet | None = None

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> SecretStore:
        return cls(db, lambda: load_key(settings.home, settings.secret_key))

    def __repr__(self) -> str:
        return f"SecretStore(db={self.db.safe_url!r}, key=<hidden>)"

    def _cipher(self) -> Fernet:
        if self._fernet is None:  # the key file is made on first use, not at server start
            from cryptography.fernet import Fernet

            self._fernet = Fernet(self._key())
        return self._fernet

    def set(self, kind: Kind, name: str, data: Mapping[str, str], merge: bool = False) -> Entry:
        """Create or replace ``name``; with ``merge`` the given keys are added to (or replace) those stored."""
        check_name(kind, name)
        values = check_data(kind, dict(data))
        stamp = now_ms()
        with self.db.write() as s:
            row = s.get(StoredSecret, (kind, name))
            if row is not None and merge:
                values = check_data(kind, {**self._decode(row), **values})
            encoded = self._encode(kind, values)
            if row is None:
                row = StoredSecret(kind=kind, name=name, keys=sorted(values), data=encoded, created_ms=stamp,
                                   updated_ms=stamp)
                s.add(row)
            else:
                row.keys, row.data, row.updated_ms = sorted(values), encoded, stamp
            return _entry(row)

    def get(self, kind: Kind, name: str) -> SecretData:
        with self.db.read() as s:
            row = s.get(StoredSecret, (kind, name))
            if row is None:
                raise NotFound(f"{WORDS[kind]} {name!r} does not exist. Create it with: "
                               f"{COMMANDS[kind]} set {name} KEY=VALUE")
            return self._decode(row)

    def describe(self, kind: Kind, name: str) -> Entry:
        with self.db.read() as s:
            row = s.get(StoredSecret, (kind, name))
            if row is None:
                raise NotFound(f"{WORDS[kind]} {name!r} does not exist. List them with: {COMMANDS[kind]} list")
            return _entry(row)

    def list(self, kind: Kind) -> list[Entry]:
        with self.db.read() as s:
            rows = s.scalars(select(StoredSecret).where(StoredSecret.kind == kind).order_by(StoredSecret.name))
            return [_entry(r) for r in rows]

    def delete(self, kind: Kind, name: str) -> None:
        with self.db.write() as s:
            row = s.get(StoredSecret, (kind, name))
            if row is None:
                raise NotFound(f"{WORDS[kind]} {name!r} does not exist. List them with: {COMMANDS[kind]} list")
            s.delete(row)

    def _encode(self, kind: Kind, values: dict[str, str]) -> str:
        text = json.dumps(values, sort_keys=True)
        return self._cipher().encrypt(text.encode()).decode() if kind == "secret" else text

    def _decode(self, row: StoredSecret) -> SecretData:
        if row.kind != "secret":
            return SecretData(json.loads(row.data))
        from cryptography.fernet import InvalidToken

        try:
            return SecretData(json.loads(self._cipher().decrypt(row.data.encode())))
        except InvalidToken as exc:
            raise Conflict(f"Secret {row.name!r} cannot be decrypted with this server's key: the key changed "
                           "(KFBOX_SECRET_KEY or <home>/secret.key). Restore the key, or set the secret "
                           f"again with: kfbox secrets set {row.name} KEY=VALUE") from exc


def _entry(row: StoredSecret) -> Entry:
    kind: Kind = "secret" if row.kind == "secret" else "configmap"
    return Entry(kind=kind, name=row.name, keys=list(row.keys), created_ms=row.created_ms, updated_ms=row.updated_ms)


def referenced_names(spec: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[Kind, set[str]]:
    """Names a run's kfp-kubernetes settings may use: constants, and for names given as component
    inputs, the run's string parameters and the pipeline's string defaults (they flow from there)."""
    platform = spec.get("platform_spec") if isinstance(spec.get("platform_spec"), Mapping) else {}
    executors = ((platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
                 .get("executors", {}))
    found: dict[Kind, set[str]] = {"secret": set(), "configmap": set()}
    pipeline = spec.get("pipeline_spec") if isinstance(spec.get("pipeline_spec"), Mapping) else spec
    declared = (pipeline or {}).get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    defaults = [d.get("defaultValue") for d in declared.values() if isinstance(d, Mapping)]
    candidates = {v for v in [*parameters.values(), *defaults] if isinstance(v, str)}
    for config in executors.values():
        for kind in KINDS:
            field = ENV_FIELDS[kind][1]
            for section in (ENV_FIELDS[kind][0], VOLUME_FIELDS[kind][0]):
                for entry in (config or {}).get(section) or []:
                    try:
                        found[kind].add(name_of(entry, field))
                    except InvalidInput:
                        found[kind] |= candidates
    return found


def seal(store: SecretStore, spec: Mapping[str, Any], parameters: Mapping[str, Any]) -> str | None:
    """An encrypted token of the secrets and config maps ``spec`` refers to (those that exist), or None."""
    payload: dict[str, dict[str, dict[str, str]]] = {}
    for kind, names in referenced_names(spec, parameters).items():
        for name in sorted(names):
            try:
                payload.setdefault(kind, {})[name] = dict(store.get(kind, name))
            except NotFound:
                continue  # a missing one fails the task that needs it, with the command to create it
    if not payload:
        return None
    return store._cipher().encrypt(json.dumps(payload).encode()).decode()


