"""The Dex user's password: a bcrypt hash in Secret ``auth/dex-passwords`` (key ``DEX_USER_PASSWORD``).

Upstream's README makes the hash with ``passlib`` ``bcrypt.using(rounds=12, ident="2y")``;
the ``bcrypt`` package gives the same algorithm as ``$2b$`` and we relabel it ``$2y$`` to
match byte for byte what the manifests ship (Go's bcrypt, used by Dex, reads both).

Example::

    secret_yaml(hash_password("s3cret-pass"))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bcrypt
import yaml

USER = "user@example.com"
DEFAULT_PASSWORD = "12341234"
MIN_LENGTH = 8


def hash_password(password: str, rounds: int = 12) -> str:
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return "$2y$" + digest[4:]


def secret_yaml(password_hash: str) -> str:
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "dex-passwords", "namespace": "auth",
                           "labels": {"app.kubernetes.io/managed-by": "kfbox"}},
              "type": "Opaque", "stringData": {"DEX_USER_PASSWORD": password_hash}}
    return yaml.safe_dump(secret, sort_keys=False)


def save_password(folder: Path, password: str) -> Path:
    """Kept (mode 0600) so ``kfbox cluster creds dex`` can show what was set."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dex.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"user": USER, "password": password}, file)
    return path


def load_password(folder: Path) -> tuple[str, bool]:
    """The password set at install, or upstream's default; the flag says whether it is the default."""
    try:
        password = str(json.loads((folder / "dex.json").read_text())["password"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_PASSWORD, True
    return password, password == DEFAULT_PASSWORD
