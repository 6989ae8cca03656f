"""What a run's tasks get of kfbox's secrets and config maps: the values side, without the database.

A run's worker reads the values the server resolved for it (:func:`kfbox.pipelines.secrets.seal`,
or the 0600 file the supervisor writes) and turns kfp-kubernetes' ``use_secret_as_env/as_volume``
and ``use_config_map_as_env/as_volume`` into environment variables and files. Kept apart from the
store (:mod:`kfbox.pipelines.secrets`, SQLAlchemy) so a worker starts without importing SQLAlchemy.

Interface::

    source = SealedSecrets(values)                                 # or SealedSecrets.open(token, settings)
    env = task_env(source, executor_config)                        # {"PW": "s3cret", ...}
    volumes = write_task_volumes(source, executor_config, task_dir / "volumes")
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kfbox.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from kfbox.config import Settings

Kind = Literal["secret", "configmap"]
KINDS: tuple[Kind, ...] = ("secret", "configmap")
WORDS = {"secret": "Secret", "configmap": "Config map"}
COMMANDS = {"secret": "kfbox secrets", "configmap": "kfbox configmaps"}
KEY_FILE = "secret.key"
# kfp-kubernetes' platform spec fields, per kind: (env section, name field, key field), (volume section, name)
ENV_FIELDS: dict[Kind, tuple[str, str, str]] = {"secret": ("secretAsEnv", "secretName", "secretKey"),
                                                "configmap": ("configMapAsEnv", "configMapName", "configMapKey")}
VOLUME_FIELDS: dict[Kind, tuple[str, str]] = {"secret": ("secretAsVolume", "secretName"),
                                              "configmap": ("configMapAsVolume", "configMapName")}


class SecretData(dict[str, str]):
    """The values of one secret: a plain dict whose ``repr`` names the keys and hides the values."""

    def __repr__(self) -> str:
        return f"SecretData(keys={sorted(self)!r})"

    __str__ = __repr__


def load_key(home: Path, configured: str | None) -> bytes:
    """The Fernet key: derived from ``KFBOX_SECRET_KEY``, else read (or first made) at ``<home>/secret.key``."""
    if configured:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kfbox-secrets", info=b"fernet").derive(
            configured.encode())
        return base64.urlsafe_b64encode(derived)
    from cryptography.fernet import Fernet

    path = home / KEY_FILE
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise Conflict(f"The secrets key {path} can be read by other users (mode {mode:o}); "
                           f"restrict it with: chmod 600 {path}") from None
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


class SecretSource(Protocol):
    """Where task_env and write_task_volumes read values: a :class:`SecretStore` or :class:`SealedSecrets`."""

    def get(self, kind: Kind, name: str) -> SecretData: ...


class SealedSecrets:
    """The secrets and config maps one run may use, opened in its worker from :func:`seal`'s token."""

    def __init__(self, values: Mapping[str, Mapping[str, Mapping[str, str]]]) -> None:
        self._values = values

    @classmethod
    def open(cls, token: str | None, settings: Settings) -> SealedSecrets:
        if not token:
            return cls({})
        from cryptography.fernet import Fernet, InvalidToken

        try:
            values = json.loads(Fernet(load_key(settings.home, settings.secret_key)).decrypt(token.encode()))
        except InvalidToken as exc:
            raise Conflict("This run's secrets cannot be decrypted: the secrets key changed after it was "
                           "submitted (KFBOX_SECRET_KEY or <home>/secret.key). Submit the run again.") from exc
        return cls(values)

    def get(self, kind: Kind, name: str) -> SecretData:
        values = self._values.get(kind, {}).get(name)
        if values is None:
            raise NotFound(f"{WORDS[kind]} {name!r} does not exist. Create it with: "
                           f"{COMMANDS[kind]} set {name} KEY=VALUE")
        return SecretData(values)

    def __repr__(self) -> str:
        names = {kind: sorted(v) for kind, v in self._values.items()}
        return f"SealedSecrets({names!r})"


def name_of(entry: Mapping[str, Any], field: str) -> str:
    """The constant name in a kfp-kubernetes entry (``secretName`` or its ``...NameParameter``)."""
    parameter = entry.get(f"{field}Parameter") or {}
    constant = parameter.get("runtimeValue", {}).get("constant") if isinstance(parameter, dict) else None
    name = entry.get(field) or constant
    if not name:
        raise InvalidInput(f"kfp-kubernetes {field} is not a constant here ({dict(entry)!r}); the engine must "
                           "resolve it from the task's inputs.")
    return str(name)


def _lookup(store: SecretSource, kind: Kind, name: str, optional: bool) -> SecretData | None:
    try:
        return store.get(kind, name)
    except NotFound:
        if optional:
            return None
        raise NotFound(f"The task uses {WORDS[kind].lower()} {name!r}, which does not exist. Create it with: "
                       f"{COMMANDS[kind]} set {name} KEY=VALUE") from None


def task_env(store: SecretSource, executor_config: Mapping[str, Any],
             name_of: Callable[[Mapping[str, Any], str], str] = name_of) -> dict[str, str]:
    """Environment variables from ``use_secret_as_env`` / ``use_config_map_as_env``."""
    env: dict[str, str] = {}
    for kind in KINDS:
        section, field, key_field = ENV_FIELDS[kind]
        for entry in executor_config.get(section) or []:
            name = name_of(entry, field)
            values = _lookup(store, kind, name, bool(entry.get("optional")))
            if values is None:
                continue
            for pair in entry.get("keyToEnv") or []:
                key = pair.get(key_field)
                if key not in values:
                    if entry.get("optional"):
                        continue
                    raise NotFound(f"{WORDS[kind]} {name!r} has no key {key!r} (keys: {', '.join(sorted(values))}). "
                                   f"Add it with: {COMMANDS[kind]} set {name} {key}=VALUE --merge")
                env[str(pair["envVar"])] = values[key]
    return env


def write_task_volumes(store: SecretSource, executor_config: Mapping[str, Any], root: Path,
                       name_of: Callable[[Mapping[str, Any], str], str] = name_of) -> dict[str, Path]:
    """Materialise ``use_*_as_volume``: one folder per mount (a file per key, 0600), by mount path."""
    mounts: dict[str, Path] = {}
    for kind in KINDS:
        section, field = VOLUME_FIELDS[kind]
        for entry in executor_config.get(section) or []:
            name = name_of(entry, field)
            values = _lookup(store, kind, name, bool(entry.get("optional")))
            if values is None:
                continue
            folder = root / kind / name
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            for key, value in values.items():  # keys were checked to be plain file names
                fd = os.open(folder / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(value)
            mounts[str(entry["mountPath"])] = folder
    return mounts
