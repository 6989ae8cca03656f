"""Laptop -> cluster: copy a registered model version, its metadata and its files, optionally deploy it.

Reads the version from the local kfbox (``/api/model_registry/v1``), uploads its model files
to the target's S3 (``s3://mlpipeline/private/NAMESPACE/models/MODEL/VERSION/...``: SeaweedFS
on a Kubeflow cluster, where a profile's keys may write only under ``private/NAMESPACE/``,
``private-artifacts/NAMESPACE/``, ``artifacts/`` and ``shared/`` (pipelines-profile-controller's
IAM policy); any S3 elsewhere), then creates the model, the version (description, author, custom
properties, plus ``kfbox.promoted_from``) and every artifact (model artifacts with their new
``s3://`` URI; metrics and parameters as they are) in the target's Model Registry, at the
prefix the target serves. A re-run finds what it created before and does not duplicate it.

With ``deploy``, the InferenceService (storageUri = the uploaded ``s3://`` URI) is applied:
on a Kubeflow cluster with kubectl (plus the S3 Secret/ServiceAccount the storage initializer
reads and the predictor's AuthorizationPolicy); on a kfbox target through its Kubernetes-style
API with the kubernetes client.

Example::

    promote(source_api, resolver, Remote(ctx, home), "iris", "v3", deploy=True, runner=SubprocessRunner())
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kfbox.client import ApiClient
from kfbox.client.registry import pages
from kfbox.cluster.objects import check_kserve, inference_service, predictor_authorization_policy, s3_access
from kfbox.cluster.remote import Remote
from kfbox.cluster.runner import Command, CommandRunner
from kfbox.errors import Conflict, InvalidInput, KfboxError, NotFound, Unavailable
from kfbox.extras import require
from kfbox.names import check_dns1123_label
from kfbox.storage.uris import UriResolver

SOURCE_API = "/api/model_registry/v1"
PROMOTED_FROM = "kfbox.promoted_from"
S3_SECRET = "kfbox-s3"
_READ_ONLY = ("id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch", "externalId", "registeredModelId",
              "modelVersionId", "experimentId", "experimentRunId")
Say = Callable[[str], None]


@dataclasses.dataclass
class Promotion:
    model: str
    version: str
    model_id: str = ""
    version_id: str = ""
    created: bool = True
    artifacts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    uploaded_bytes: int = 0
    deployed: dict[str, Any] | None = None


def _string(value: str) -> dict[str, str]:
    return {"metadataType": "MetadataStringValue", "string_value": value}


def _writable(entity: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entity.items() if key not in _READ_ONLY and value is not None}


def _find(remote: Remote, path: str, **params: str) -> dict[str, Any] | None:
    try:
        found = remote.call("GET", path, params=params)
    except NotFound:
        return None
    return found if isinstance(found, dict) and found.get("id") else None


def read_source(api: ApiClient, model: str,
                version: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    try:
        registered = api.get(f"{SOURCE_API}/registered_model", params={"name": model})
    except NotFound as exc:
        raise NotFound(f"Model {model!r} not found in the local registry. List models with: kfbox models list") \
            from exc
    try:
        found = api.get(f"{SOURCE_API}/model_version", params={"name": version, "parentResourceId": registered["id"]})
    except NotFound as exc:
        raise NotFound(f"Model {model!r} has no version {version!r}. List versions with: kfbox models show {model}") \
            from exc
    artifacts = list(pages(api, f"{SOURCE_API}/model_versions/{found['id']}/artifacts"))
    return registered, found, artifacts


def _key_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


class S3Target:
    """The target's S3 (boto3), as this machine reaches it."""

    def __init__(self, endpoint: str, access_key: str | None, secret_key: str | None, bucket: str) -> None:
        boto3 = require("boto3", extra="s3", feature="kfbox promote")  # slow to import: only when promoting

        self.bucket = bucket
        self.endpoint = endpoint
        self.client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                                   aws_secret_access_key=secret_key, region_name="us-east-1")

    def ensure_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("403", "AccessDenied", "Forbidden"):
                return  # a profile's keys may write under its prefix without seeing the bucket itself
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise Unavailable(f"S3 bucket {self.bucket!r} at {self.endpoint}: {exc}") from exc
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as create_exc:
                raise Unavailable(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint} and could not be "
                                  f"created: {create_exc}") from create_exc
        except BotoCoreError as exc:
            raise Unavailable(f"Cannot reach the cluster's S3 at {self.endpoint}: {exc}. "
                              "For kind: kfbox cluster expose s3") from exc

    def upload(self, local: Path, prefix: str) -> tuple[str, int]:
        """Upload a file or a folder under ``prefix``; returns (its s3:// URI, bytes)."""
        from botocore.exceptions import BotoCoreError, ClientError

        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        if not files:
            raise NotFound(f"No files at {local} to upload")
        total = 0
        try:
            for path in files:
                relative = path.name if local.is_file() else path.relative_to(local).as_posix()
                self.client.upload_file(str(path), self.bucket, f"{prefix}/{relative}")
                total += path.stat().st_size
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"Upload to s3://{self.bucket}/{prefix} at {self.endpoint} failed: {exc}") from exc
        suffix = f"/{local.name}" if local.is_file() else ""
        return f"s3://{self.bucket}/{prefix}{suffix}", total


def _ensure_model(remote: Remote, prefix: str, registered: dict[str, Any]) -> dict[str, Any]:
    found = _find(remote, f"{prefix}/registered_model", name=registered["name"])
    if found:
        return found
    body = {k: v for k, v in _writable(registered).items() if k in ("name", "description", "owner",
                                                                      "customProperties", "state")}
    created: dict[str, Any] = remote.call("POST", f"{prefix}/registered_models", json=body)
    return created


def _copy_artifact(remote: Remote, prefix: str, version_id: str, artifact: dict[str, Any], uri: str | None,
                   say: Say) -> dict[str, Any]:
    body = _writable(artifact)
    if uri is not None:
        body["uri"] = uri
    try:
        created: dict[str, Any] = remote.call("POST", f"{prefix}/model_versions/{version_id}/artifacts", json=body)
        return created
    except InvalidInput as exc:
        if artifact.get("artifactType") == "model-artifact":
            raise
        # an older registry without this artifact type: keep the value on the version instead
        say(f"target refused {artifact.get('artifactType')} {artifact.get('name')!r} ({exc.message}); "
            "kept as a custom property of the version")
        value = artifact.get("value", artifact.get("uri", ""))
        key = f"{artifact.get('artifactType')}.{artifact.get('name')}"
        remote.call("PATCH", f"{prefix}/model_versions/{version_id}",
                    json={"customProperties": {key: _string(str(value))}})
        return {"name": artifact.get("name"), "artifactType": "customProperty", "uri": None}


def promote(source: ApiClient, resolver: UriResolver, remote: Remote, model: str, version: str, *,
            deploy: bool = False, service_name: str | None = None, runner: CommandRunner | None = None,
            say: Say = lambda text: None) -> Promotion:
    ctx = remote.context
    registered, found, artifacts = read_source(source, model, version)
    models = [a for a in artifacts if a.get("artifactType") == "model-artifact"]
    if deploy and not models:
        raise InvalidInput(f"{model} {version} has no model artifact to deploy")
    result = Promotion(model, version)
    prefix = remote.registry_prefix()
    say(f"target registry at {ctx.host}{prefix}")
    target_model = _ensure_model(remote, prefix, registered)
    result.model_id = str(target_model["id"])
    origin = f"{source.base_url} model {registered['id']} version {found['id']}"
    existing = _find(remote, f"{prefix}/model_version", name=version, parentResourceId=result.model_id)
    if existing:
        promoted = existing.get("customProperties", {}).get(PROMOTED_FROM, {}).get("string_value")
        if promoted != origin:
            raise Conflict(f"{model} {version} already exists at {ctx.name} and was not promoted from this "
                           f"registry ({promoted or 'created there'}); register a new version locally first.")
        result.created = False
        result.version_id = str(existing["id"])
        result.artifacts = list(pages(remote.api(), f"{prefix}/model_versions/{existing['id']}/artifacts"))
        say(f"{model} {version} was promoted before (version id {existing['id']}); nothing to copy")
    else:
        if models and not ctx.s3_endpoint:
            raise InvalidInput(f"Context {ctx.name!r} has no S3 endpoint for the model files. Add one: kfbox context "
                               f"add {ctx.name} ... --s3-endpoint http://127.0.0.1:8333 (kfbox cluster expose s3; "
                               "keys: kfbox cluster creds s3)")
        uploads: dict[str, str] = {}
        if models:
            s3 = S3Target(ctx.s3_endpoint or "", ctx.s3_access_key, ctx.s3_secret_key, ctx.s3_bucket)
            s3.ensure_bucket()
            for artifact in models:
                local = resolver.localize(str(artifact.get("uri", "")))
                key = (f"{ctx.s3_prefix.format(namespace=ctx.namespace).strip('/')}/{_key_part(model)}/"
                       f"{_key_part(version)}/{_key_part(artifact.get('name') or 'model')}")
                uri, size = s3.upload(local, key)
                uploads[str(artifact["id"])] = uri
                result.uploaded_bytes += size
                say(f"uploaded {local} -> {uri} ({size} bytes)")
        body = {k: v for k, v in _writable(found).items()
                if k in ("name", "description", "author", "state", "customProperties")}
        body["customProperties"] = {**body.get("customProperties", {}), PROMOTED_FROM: _string(origin)}
        body["registeredModelId"] = result.model_id
        created = remote.call("POST", f"{prefix}/registered_models/{result.model_id}/versions", json=body)
        result.version_id = str(created["id"])
        for artifact in artifacts:
            result.artifacts.append(_copy_artifact(remote, prefix, result.version_id, artifact,
                                                   uploads.get(str(artifact.get("id"))), say))
        say(f"created {model} {version} at {ctx.name} (version id {result.version_id}, "
            f"{len(result.artifacts)} artifact(s))")
    if deploy:
        model_artifact = next(a for a in result.artifacts if a.get("artifactType") == "model-artifact")
        result.deployed = deploy_version(remote, service_name or model, model_artifact, runner)
        say(f"applied InferenceService {ctx.namespace}/{result.deployed['metadata']['name']}")
    return result


def deploy_version(remote: Remote, name: str, artifact: dict[str, Any],
                   runner: CommandRunner | None) -> dict[str, Any]:
    ctx = remote.context
    try:
        check_dns1123_label(name)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message} Choose the InferenceService name with --name.") from None
    account = S3_SECRET if ctx.kind == "kubeflow" else None
    isvc = check_kserve(inference_service(name, ctx.namespace, str(artifact["uri"]),
                                          model_format=artifact.get("modelFormatName") or "sklearn",
                                          service_account=account))
    if ctx.kind == "kfbox":
        _apply_with_kubernetes_client(remote, isvc)
        return isvc
    if not ctx.kube_context:
        raise InvalidInput(f"Context {ctx.name!r} has no --kube-context to apply the InferenceService with "
                           "(kind: kind-kubeflow).")
    if runner is None:
        raise InvalidInput("Deploying to a cluster needs a command runner")
    objects = [*s3_access(S3_SECRET, ctx.namespace, ctx.s3_cluster_endpoint, ctx.s3_access_key or "",
                          ctx.s3_secret_key or ""), isvc, predictor_authorization_policy(name, ctx.namespace)]
    command = Command(("kubectl", "--context", ctx.kube_context, "apply", "--server-side", "--force-conflicts",
                       "--field-manager=kfbox", "-f", "-"), stdin=yaml.safe_dump_all(objects, sort_keys=False),
                      stdin_label="<S3 Secret + ServiceAccount, InferenceService, AuthorizationPolicy>", timeout=120)
    applied = runner.run(command)
    if not applied.ok:
        raise Unavailable(f"kubectl apply of InferenceService {ctx.namespace}/{name} failed: "
                          f"{applied.first_error_line()}")
    return isvc


def _apply_with_kubernetes_client(remote: Remote, isvc: dict[str, Any]) -> None:
    """Create or merge-patch through a Kubernetes-style API (a kfbox target serves serving.kserve.io)."""
    from kubernetes import client

    ctx = remote.context
    configuration = client.Configuration(host=ctx.host)
    if ctx.auth == "token" and ctx.token:
        configuration.api_key = {"authorization": ctx.token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    args = ("serving.kserve.io", "v1beta1", ctx.namespace, "inferenceservices")
    name = isvc["metadata"]["name"]
    try:
        try:
            api.get_namespaced_custom_object(*args, name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            api.create_namespaced_custom_object(*args, isvc)
        else:
            api.patch_namespaced_custom_object(*args, name, isvc)
    except client.ApiException as exc:
        raise KfboxError(f"Applying InferenceService {ctx.namespace}/{name} at {ctx.host} failed: "
                         f"{exc.status} {exc.reason}: {exc.body}") from exc
