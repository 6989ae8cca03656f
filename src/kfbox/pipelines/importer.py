"""``dsl.importer`` locally: the artifact at a URI, as a local file or folder a task can open.

On a cluster the KFP launcher downloads an imported artifact from object storage when a
task reads it. Here the engine calls :func:`fetch_artifact` once per importer task:

* ``file:///abs/path`` -- the path itself (no copy): absolute, no ``..``, links resolved,
  a regular file or a folder that exists.
* ``s3://bucket/key`` (and KFP's ``minio://``) -- from the configured endpoint
  (``KFBOX_S3_ENDPOINT``, ``KFBOX_S3_ACCESS_KEY``, ``KFBOX_S3_SECRET_KEY``): the object
  ``key``, or every object under ``key/`` as a folder; at most ``importer_max_bytes`` in all.
* ``http://`` / ``https://`` -- one file with httpx: redirects followed (5 at most),
  ``importer_max_bytes`` cap (checked on Content-Length and while streaming), a timeout.
* ``oci://`` -- a Modelcar image's ``/models`` folder, through Docker or Podman
  (:mod:`kfbox.pipelines.modelcar`); refused, naming what is needed, without an engine.
* ``gs://`` -- refused: kfbox has no Google credentials; the message says what to use.

Downloads go to ``dest`` (created; written as ``*.partial`` and renamed, so a half-finished
download is never taken for an artifact). :func:`check_uri` does the checks that need no
network, so the engine can refuse a pipeline at submit, naming the task.

Interface::

    check_uri("gs://b/x", settings)                         # InvalidInput (400) at submit
    path = fetch_artifact("s3://data/iris.csv", run_dir / "importer-1", settings)
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from kfbox.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable
from kfbox.extras import require
from kfbox.storage.uris import UriResolver, safe_join

if TYPE_CHECKING:
    from kfbox.config import Settings

SCHEMES = ("file", "s3", "minio", "http", "https", "oci")
TIMEOUT_SECONDS = 60.0
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


def check_uri(uri: str, settings: Settings) -> str:
    """The URI's scheme, or InvalidInput naming what to do instead; touches no network."""
    parts = urlsplit(uri)
    scheme = parts.scheme
    if scheme == "gs":
        raise InvalidInput(f"dsl.importer URI {uri!r}: gs:// needs Google Cloud credentials, which kfbox does not "
                           "use. Copy the object first (gcloud storage cp URI ./data) and import file:///abs/path, "
                           "or put it in your S3 store (s3://, with KFBOX_S3_ENDPOINT) or behind https://.")
    if scheme not in SCHEMES:
        raise InvalidInput(f"dsl.importer URI {uri!r} has scheme {scheme + '://' if scheme else 'none'}; "
                           "kfbox imports from file:///abs/path, s3://bucket/key (minio://), http(s)://, "
                           "oci:// (a Modelcar image, with Docker or Podman).")
    if scheme == "oci":
        from kfbox.pipelines import modelcar

        modelcar.check(uri, settings)
    if scheme in ("s3", "minio"):
        if not parts.netloc:
            raise InvalidInput(f"dsl.importer URI {uri!r} has no bucket; write s3://BUCKET/KEY.")
        if not settings.s3_endpoint:
            raise InvalidInput(f"dsl.importer URI {uri!r} needs an S3 endpoint: set KFBOX_S3_ENDPOINT (and "
                               "KFBOX_S3_ACCESS_KEY, KFBOX_S3_SECRET_KEY), e.g. http://127.0.0.1:9000 for MinIO "
                               "or https://s3.amazonaws.com.")
    if scheme in ("http", "https") and not parts.netloc:
        raise InvalidInput(f"dsl.importer URI {uri!r} has no host.")
    if scheme == "file":
        UriResolver(settings).local_path(uri)  # absolute, no '..', no host
    return scheme


def fetch_artifact(uri: str, dest: Path, settings: Settings, timeout: float = TIMEOUT_SECONDS) -> Path:
    """The local file or folder holding the artifact at ``uri`` (downloaded into ``dest`` unless file://)."""
    scheme = check_uri(uri, settings)
    if scheme == "file":
        return _local(uri, settings)
    if scheme == "oci":
        from kfbox.pipelines import modelcar

        return modelcar.fetch(uri, dest, settings)
    dest.mkdir(parents=True, exist_ok=True)
    if scheme in ("s3", "minio"):
        return _from_s3(uri, dest, settings)
    return _from_http(uri, dest, settings.importer_max_bytes, timeout)


def _local(uri: str, settings: Settings) -> Path:
    path = UriResolver(settings).real_path(uri)
    if not path.exists():
        raise NotFound(f"dsl.importer URI {uri!r}: nothing at {path}. Check the path (it is read on this machine).")
    if not (path.is_file() or path.is_dir()):
        raise InvalidInput(f"dsl.importer URI {uri!r}: {path} is not a regular file or a folder.")
    return path


def _name(path: str) -> str:
    name = PurePosixPath(unquote(path)).name
    return name if name not in ("", ".", "..") else "artifact"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _finish(staging: Path, target: Path) -> Path:
    _remove(target)
    staging.rename(target)
    return target


def _from_s3(uri: str, dest: Path, settings: Settings) -> Path:
    boto3 = require("boto3", extra="s3", feature="A dsl.importer s3:// URI")  # slow to import: only here
    from botocore.exceptions import BotoCoreError, ClientError

    parts = urlsplit(uri)
    bucket, key = parts.netloc, unquote(parts.path).lstrip("/")
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint, aws_access_key_id=settings.s3_access_key,
                          aws_secret_access_key=settings.s3_secret_key)
    target = dest / _name(key or bucket)
    staging = target.with_name(target.name + ".partial")
    try:
        objects = _s3_objects(client, bucket, key)
        if not objects:
            raise NotFound(f"dsl.importer URI {uri!r}: no object {key!r} (nor objects under {key.rstrip('/') + '/'!r}) "
                           f"in bucket {bucket!r} at {settings.s3_endpoint}.")
        total = sum(size for _, size in objects)
        if total > settings.importer_max_bytes:
            raise PayloadTooLarge(f"dsl.importer URI {uri!r} is {total} bytes, over the {settings.importer_max_bytes} "
                                  "byte limit; raise KFBOX_IMPORTER_MAX_BYTES to import it.")
        if len(objects) == 1 and objects[0][0] == key:
            client.download_file(bucket, key, str(staging))
            return _finish(staging, target)
        prefix = key.rstrip("/") + "/" if key else ""
        for name, _ in objects:
            path = safe_join(staging, name[len(prefix):])
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, name, str(path))
    except (BotoCoreError, ClientError) as exc:
        _remove(staging)
        raise Unavailable(f"dsl.importer URI {uri!r}: S3 at {settings.s3_endpoint} answered: {exc}") from exc
    return _finish(staging, target)


def _s3_objects(client: Any, bucket: str, key: str) -> list[tuple[str, int]]:
    """``[(key, size)]``: the object itself when it exists, else every object under ``key/``."""
    from botocore.exceptions import ClientError

    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
            return [(key, int(head["ContentLength"]))]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    prefix = key.rstrip("/") + "/" if key else ""
    return [(obj["Key"], int(obj["Size"]))
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", []) if not obj["Key"].endswith("/")]


def _from_http(uri: str, dest: Path, limit: int, timeout: float) -> Path:
    import httpx

    target = dest / _name(urlsplit(uri).path)
    staging = target.with_name(target.name + ".partial")
    try:
        with httpx.Client(follow_redirects=True, max_redirects=MAX_REDIRECTS, timeout=timeout) as client, \
                client.stream("GET", uri) as response:
            if response.status_code != 200:
                raise NotFound(f"dsl.importer URI {uri!r} answered HTTP {response.status_code}; check the URL.")
            declared = int(response.headers.get("content-length") or 0)
            if declared > limit:
                raise PayloadTooLarge(f"dsl.importer URI {uri!r} is {declared} bytes, over the {limit} byte limit; "
                                      "raise KFBOX_IMPORTER_MAX_BYTES to import it.")
            received = 0
            with open(staging, "wb") as f:
                for chunk in response.iter_bytes(CHUNK):
                    received += len(chunk)
                    if received > limit:
                        raise PayloadTooLarge(f"dsl.importer URI {uri!r} sent more than the {limit} byte limit; "
                                              "raise KFBOX_IMPORTER_MAX_BYTES to import it.")
                    f.write(chunk)
    except httpx.TimeoutException as exc:
        staging.unlink(missing_ok=True)
        raise Unavailable(f"dsl.importer URI {uri!r} did not answer within {timeout:.0f} s.") from exc
    except httpx.HTTPError as exc:
        staging.unlink(missing_ok=True)
        raise Unavailable(f"dsl.importer URI {uri!r} could not be fetched: {exc}") from exc
    except (NotFound, PayloadTooLarge):
        staging.unlink(missing_ok=True)
        raise
    return _finish(staging, target)
