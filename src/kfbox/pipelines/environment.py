"""The platform's addresses as task environment variables.

A component reads these with in-cluster defaults, so the same file runs on Kubeflow::

    host = os.environ.get("MODEL_REGISTRY_HOST", "http://model-registry-service.kubeflow.svc.cluster.local")
    port = int(os.environ.get("MODEL_REGISTRY_PORT", "8080"))
"""

from __future__ import annotations

from kfbox.addresses import bracket, connect_host
from kfbox.config import Settings


def address_environment(settings: Settings) -> dict[str, str]:
    """Where a process on this machine reaches the platform (a wildcard bind is reached on loopback), and the
    token if one is set: what tasks and notebook kernels alike inherit."""
    env = {
        "KFBOX_URL": settings.url,
        "MODEL_REGISTRY_HOST": f"http://{bracket(connect_host(settings.host))}",
        "MODEL_REGISTRY_PORT": str(settings.port),
    }
    if settings.token:
        env["MODEL_REGISTRY_TOKEN"] = settings.token
        env["KFBOX_TOKEN"] = settings.token  # for the serving API (e.g. kubernetes' CustomObjectsApi at KFBOX_URL)
    return env


def task_environment(settings: Settings) -> dict[str, str]:
    env = address_environment(settings) | {"KFBOX_PVC_ROOT": str(settings.pvc_dir)}
    if settings.s3_endpoint:
        env["AWS_S3_ENDPOINT"] = settings.s3_endpoint
        env["S3_ENDPOINT_URL"] = settings.s3_endpoint
    if settings.s3_access_key:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key
    if settings.s3_secret_key:
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_key
    if settings.s3_bucket:
        env["AWS_S3_BUCKET"] = settings.s3_bucket
    return env
