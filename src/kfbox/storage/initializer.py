"""s3:// models downloaded by KServe's own storage initializer (``kserve-storage``), in a child process.

On a cluster KServe downloads a model in an init container that runs ``Storage.download(uri,
out_dir)`` with the S3 settings in environment variables. kfbox does the same: a child process
(``python -m kfbox.storage.initializer URI OUT_DIR``) gets KServe's variables (``AWS_ENDPOINT_URL``,
``S3_ENDPOINT``, ``S3_USE_HTTPS``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, a default
``AWS_DEFAULT_REGION``) from the ``KFBOX_S3_*`` settings, on top of the server's environment, so
KServe's other knobs (``S3_VERIFY_SSL``, ``AWS_CA_BUNDLE``, ``S3_MAX_FILE_CONCURRENCY``,
``STORAGE_IGNORE_PATTERNS``...) work as they do there, and what lands is what KServe would mount
(a single ``.tar.gz``/``.zip`` is unpacked, empty objects are skipped). A child, not a call: the
library reads its settings from ``os.environ`` and forks a download pool, neither of which a
threaded server should do.

``kserve-storage`` is installed ``--no-deps`` (``make install``): its declared dependencies pull
every backend it knows (Azure, GCS < 3, Hugging Face, ModelScope, OCI, git) and pin
google-cloud-storage below the 3.x that kfp is tested with here; its s3:// path needs only boto3
(``kfbox[s3]``), ``requests`` and ``certifi``, and imports the rest only for their own schemes,
which kfbox refuses (:data:`kfbox.storage.uris.SCHEMES`).

Example::

    model_dir = download("s3://models/iris", staging, settings)
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from kfbox.config import Settings
from kfbox.errors import InsufficientStorage, InvalidInput, KfboxError, MissingExtra, NotFound, Unavailable
from kfbox.extras import missing

INSTALL = "pip install 'kfbox[s3]' && pip install --no-deps 'kserve-storage~=0.21.0'"
DOTDOT = ["..", "../*", "*/..", "*/../*"]
"""Ignore patterns (fnmatch on the key below the prefix) for keys with a ``..`` part: the library
writes ``OUT_DIR/<key>`` as given, and no key may place a file outside the download folder."""
TIMEOUT_S = 3600.0
KINDS: dict[str, type[KfboxError]] = {"not_found": NotFound, "no_space": InsufficientStorage,
                                      "unavailable": Unavailable}


def kserve_env(settings: Settings, base: dict[str, str]) -> dict[str, str]:
    """``base`` with the S3 variables KServe's webhook sets for an s3:// storage URI, from ``settings``."""
    env = dict(base)
    if settings.s3_endpoint:
        parts = urlsplit(settings.s3_endpoint)
        env["AWS_ENDPOINT_URL"] = settings.s3_endpoint
        env["S3_ENDPOINT"] = parts.netloc or settings.s3_endpoint
        env["S3_USE_HTTPS"] = "1" if parts.scheme == "https" else "0"
    if settings.s3_access_key:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key
    if settings.s3_secret_key:
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_key
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return env


def download(uri: str, out_dir: Path, settings: Settings) -> Path:
    """Download ``uri`` into ``out_dir`` with kserve-storage; the folder (or file) that holds the model."""
    if ".." in urlsplit(uri).path.split("/"):
        raise InvalidInput(f"Storage URI {uri!r} has a '..' part; name the object or prefix itself.")
    if importlib.util.find_spec("boto3") is None:
        raise missing("boto3", extra="s3", feature="An s3:// model URI")
    if importlib.util.find_spec("kserve_storage") is None:
        raise MissingExtra(f"An s3:// model URI is downloaded by KServe's storage initializer, 'kserve-storage', "
                           f"which is not installed. Install it with: {INSTALL}")
    try:
        done = subprocess.run([sys.executable, "-m", __name__, uri, str(out_dir)], capture_output=True, text=True,
                              env=kserve_env(settings, dict(os.environ)), timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"Downloading {uri!r} took over {TIMEOUT_S:.0f} s; check the S3 endpoint "
                          f"{settings.s3_endpoint}.") from exc
    lines = done.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        reply = {}
    if done.returncode == 0 and "path" in reply:
        return Path(reply["path"])
    kind = KINDS.get(str(reply.get("error")), Unavailable)
    message = reply.get("message") or (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    if kind is InsufficientStorage:
        raise InsufficientStorage(f"No space left to download {uri!r} into {out_dir}: {message}")
    raise kind(f"Cannot download {uri!r} from S3 at {settings.s3_endpoint}: {message}")


def classify(exc: BaseException) -> str:
    """The error kind the parent maps to our tree: ``not_found``, ``no_space`` or ``unavailable``."""
    text = str(exc)
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return "no_space"
        chain = chain.__cause__ or chain.__context__
    # the library's pool reports a worker's OSError as text ("Failed to download 1 files: key: [Errno 28] ...")
    if f"[Errno {errno.ENOSPC}]" in text or f"[Errno {errno.EDQUOT}]" in text:
        return "no_space"
    if text.startswith("Failed to fetch model. No model found") or text.endswith(("not found.", "does not exist.")):
        return "not_found"
    return "unavailable"


def main(argv: list[str]) -> int:
    """The child: ``Storage.download(URI, OUT_DIR)``; one JSON line on stdout says where or what failed."""
    uri, out_dir = argv
    from kserve_storage import Storage
    from kserve_storage.kserve_storage import _parse_patterns_from_env  # KServe's reading of the variable

    ignore = DOTDOT + (_parse_patterns_from_env("STORAGE_IGNORE_PATTERNS") or [])
    try:
        path = Storage.download(uri, out_dir, ignore_patterns=ignore)
    except Exception as exc:  # noqa: BLE001 -- the library raises bare Exception/RuntimeError; the parent maps them
        print(json.dumps({"error": classify(exc), "message": str(exc)}))
        return 1
    print(json.dumps({"path": path}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
