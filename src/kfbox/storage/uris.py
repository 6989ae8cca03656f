"""Storage URIs of models and artifacts: which schemes kfbox loads from, and where they land.

Only four schemes are loaded; anything else is refused, because a model file (a pickle) is
code and must come from a place the user chose on purpose:

    file:///abs/path              the path itself
    pvc://NAME/path               <home>/pvc/NAME/path (the folder pipelines mount for PVC NAME)
    model-registry://MODEL/VER    the version's artifact URI, looked up in the registry, then these rules
    s3://bucket/key               downloaded once into <home>/serving/cache by KServe's storage initializer
                                  (kserve-storage; needs KFBOX_S3_* settings, see kfbox.storage.initializer)

Paths are resolved to their real paths (symlinks followed) and must stay inside their root:
``pvc://`` inside ``<home>/pvc/NAME`` (the claim folder itself inside ``<home>/pvc``), the S3
cache inside ``<home>/serving/cache``. ``file://`` names a place the user picked on purpose, so
it may point anywhere the server's user can read, but only by an absolute path without ``..``;
its links are resolved once, and from then on the model is confined to that real path: a link
inside a model folder cannot lead out of it, and a link swapped in later is refused when the
replica opens the file (see :mod:`kfbox.storage.confine`).

Example::

    resolver = UriResolver(settings, registry_lookup)
    resolver.localize("pvc://models/iris")   # -> Path("<home>/pvc/models/iris")
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from kfbox.config import Settings
from kfbox.errors import InvalidInput, KfboxError, NotFound, Unavailable
from kfbox.storage.confine import resolve_inside
from kfbox.storage.initializer import download
from kfbox.storage.space import insufficient_storage

SCHEMES = ("file", "pvc", "model-registry", "s3")
RegistryLookup = Callable[[str, str | None], str]
"""(model name, version name or None for the latest) -> the version's artifact URI."""

MAX_REGISTRY_HOPS = 3


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative`` that refuses ``..`` and absolute parts, so no URI escapes its root."""
    parts = PurePosixPath(relative).parts
    if any(part == ".." for part in parts) or relative.startswith("/"):
        raise InvalidInput(f"Path {relative!r} must stay inside {root}; remove '..' and leading '/'.")
    return root.joinpath(*parts) if parts else root


class UriResolver:
    """Turns a storage URI into a local path, checking that it exists."""

    def __init__(self, settings: Settings, registry_lookup: RegistryLookup | None = None) -> None:
        self.settings = settings
        self.registry_lookup = registry_lookup

    def check_scheme(self, uri: str) -> str:
        """The URI's scheme, or InvalidInput when kfbox does not load from it (refused before anything runs)."""
        scheme = urlsplit(uri).scheme
        if scheme not in SCHEMES:
            raise InvalidInput(f"Storage URI {uri!r} has an unsupported scheme; use one of "
                               + ", ".join(f"{s}://" for s in SCHEMES) + ".")
        if scheme in ("file", "pvc"):
            self.real_path(uri)
        return scheme

    def localize(self, uri: str, _hops: int = 0) -> Path:
        scheme = self.check_scheme(uri)
        if scheme == "model-registry":
            if _hops >= MAX_REGISTRY_HOPS:
                raise InvalidInput(f"Storage URI {uri!r} resolves through the registry too many times.")
            return self.localize(self._from_registry(uri), _hops + 1)
        if scheme == "s3":
            return self._from_s3(uri)
        path = self.real_path(uri)
        try:
            exists = path.exists()
        except OSError as exc:  # a name too long for the filesystem, say
            raise InvalidInput(f"Storage URI {uri!r} is not a usable path: {exc.strerror}.") from exc
        if not exists:
            raise NotFound(f"Nothing at {path} (from storage URI {uri!r}). Check the path, or copy the model there.")
        return path

    def local_path(self, uri: str) -> Path:
        """Where a file:// or pvc:// URI points, without checking that it exists."""
        if "\x00" in unquote(uri):
            raise InvalidInput(f"Storage URI {uri!r} contains a NUL character (%00), which no path can hold.")
        parts = urlsplit(uri)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidInput(f"file:// URI {uri!r} names host {parts.netloc!r}; write file:///abs/path.")
            path = unquote(parts.path)
            if not path.startswith("/") or ".." in PurePosixPath(path).parts:
                raise InvalidInput(f"file:// URI {uri!r} needs an absolute path without '..'.")
            return Path(path)
        if parts.scheme == "pvc":
            name = parts.netloc
            if not name or name in (".", ".."):
                raise InvalidInput(f"pvc:// URI {uri!r} has no claim name; write pvc://NAME/path.")
            return safe_join(self.settings.pvc_dir / name, unquote(parts.path).lstrip("/"))
        raise InvalidInput(f"Storage URI {uri!r} is not a local path (file:// or pvc://).")

    def real_path(self, uri: str) -> Path:
        """The real path (links resolved) of a file:// or pvc:// URI; a pvc:// one must stay in its claim folder."""
        path = self.local_path(uri)
        if urlsplit(uri).scheme == "pvc":
            claim = self.settings.pvc_dir / urlsplit(uri).netloc
            resolve_inside(claim, self.settings.pvc_dir, uri)
            return resolve_inside(path, claim, uri)
        return resolve_inside(path, Path("/"), uri)

    def _from_registry(self, uri: str) -> str:
        parts = urlsplit(uri)
        path = unquote(parts.path).strip("/")
        model, _, version = (unquote(parts.netloc) + ("/" + path if path else "")).partition("/")
        if not model or "/" in version:
            raise InvalidInput(f"Storage URI {uri!r} should be model-registry://MODEL/VERSION "
                               "(or model-registry://MODEL for the latest version).")
        if self.registry_lookup is None:
            raise Unavailable(f"Cannot resolve {uri!r}: the Model Registry is not available in this server.")
        return self.registry_lookup(model, version or None)

    def _from_s3(self, uri: str) -> Path:
        settings = self.settings
        if not settings.s3_endpoint:
            raise InvalidInput(f"Storage URI {uri!r} needs S3; set KFBOX_S3_ENDPOINT, KFBOX_S3_ACCESS_KEY "
                               "and KFBOX_S3_SECRET_KEY.")
        cache = settings.serving_dir / "cache"
        target = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if target.exists():
            return resolve_inside(_single_file_or_dir(target), cache, uri)
        staging = target.with_suffix(".partial")
        shutil.rmtree(staging, ignore_errors=True)  # what an interrupted download left
        try:
            download(uri, staging, settings)
        except BaseException as exc:  # a full disk above all: no half-downloaded model stays in the cache
            shutil.rmtree(staging, ignore_errors=True)
            full = None if isinstance(exc, KfboxError) else insufficient_storage(exc, str(cache))
            if full is None:
                raise
            raise full from exc
        staging.rename(target)
        return resolve_inside(_single_file_or_dir(target), cache, uri)


def _single_file_or_dir(folder: Path) -> Path:
    entries = list(folder.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_file() else folder
