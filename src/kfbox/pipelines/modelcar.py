"""``dsl.importer`` of an ``oci://`` URI (a KServe *Modelcar*: an image whose ``/models`` holds a model).

On a cluster the KFP driver adds the image to the task's pod (``addModelcarsToPodSpec``) and the
task reads the model files at ``Artifact.path`` (``/oci/<image>/models``). Here the image's
``/models`` folder is copied out with the container runtime, as its own CLI does it: ``create``
(which pulls the image when it is not there yet), ``cp <id>:/models``, ``rm``. A downstream task then
gets that folder as the artifact's path, like any imported artifact.

An OCI registry is only reachable through Docker or Podman: without one that answers
(``KFBOX_CONTAINER_RUNTIME`` ``auto``/``docker``/``podman``), :func:`check` refuses the URI naming
what is needed -- a 400 at submit when the URI is a constant, the importer task's error otherwise.
``host`` mode has no image store, so it cannot import one either.

Interface::

    runtime = check("oci://registry.local/org/model:v1", settings)   # InvalidInput without an engine
    folder = fetch("oci://registry.local/org/model:v1", dest, settings)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from kfbox.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable
from kfbox.pipelines.containers import ENGINES, Runtime, detect_runtime

if TYPE_CHECKING:
    from kfbox.config import Settings

PREFIX = "oci://"
MODELS = "/models"  # where a Modelcar image keeps its files (KServe's convention)
PULL_TIMEOUT_SECONDS = 1800.0


def check(uri: str, settings: Settings) -> Runtime:
    """The runtime that can pull ``uri``'s image, or InvalidInput naming what is missing."""
    image = uri[len(PREFIX):]
    if not image or image.startswith("/"):
        raise InvalidInput(f"dsl.importer URI {uri!r} names no image; write oci://REGISTRY/REPOSITORY:TAG.")
    setting = settings.container_runtime
    runtime = detect_runtime(setting) if setting != "host" else None
    if runtime is None:
        wanted = "docker or podman" if setting in ("auto", "host") else setting
        raise InvalidInput(f"dsl.importer URI {uri!r} is a Modelcar image in an OCI registry: importing it needs "
                           f"{wanted} with a running engine to pull the image and copy its {MODELS} folder "
                           f"(KFBOX_CONTAINER_RUNTIME is {setting!r} and {_state(setting)}). Start an engine, or "
                           "import the model's files with file:///abs/path, s3:// or https://.")
    return runtime


def _state(setting: str) -> str:
    if setting == "host":
        return "host mode has no image store"
    found = [e for e in (ENGINES if setting == "auto" else (setting,)) if shutil.which(e)]
    return f"{', '.join(found)} does not answer" if found else f"no {' or '.join(ENGINES)} command is on PATH"


def fetch(uri: str, dest: Path, settings: Settings) -> Path:
    """The image's ``/models`` folder, copied to ``dest/models`` (pulled first when needed)."""
    runtime = check(uri, settings)
    executable = runtime.executable or runtime.kind
    image = uri[len(PREFIX):]
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "models"
    staging = dest / "models.partial"
    shutil.rmtree(staging, ignore_errors=True)
    created = _run([executable, "create", image, "true"], uri, "pull the image")
    container = created.strip().splitlines()[-1] if created.strip() else ""
    try:
        _run([executable, "cp", f"{container}:{MODELS}", str(staging)], uri, f"copy its {MODELS} folder")
    finally:
        subprocess.run([executable, "rm", "--force", container], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, check=False)
    if not staging.is_dir() or not any(staging.iterdir()):
        shutil.rmtree(staging, ignore_errors=True)
        raise NotFound(f"dsl.importer URI {uri!r}: the image has no files in {MODELS}, so it is not a Modelcar.")
    size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    if size > settings.importer_max_bytes:
        shutil.rmtree(staging, ignore_errors=True)
        raise PayloadTooLarge(f"dsl.importer URI {uri!r}: {MODELS} holds {size} bytes, over the "
                              f"{settings.importer_max_bytes} byte limit; raise KFBOX_IMPORTER_MAX_BYTES to import it.")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _run(argv: list[str], uri: str, what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PULL_TIMEOUT_SECONDS,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"dsl.importer URI {uri!r}: could not {what} ({' '.join(argv[:2])}): {exc}") from exc
    if done.returncode != 0:
        raise Unavailable(f"dsl.importer URI {uri!r}: could not {what}: {argv[0]} {argv[1]} said: "
                          f"{(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout
