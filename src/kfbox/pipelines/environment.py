"""The platform's addresses as task environment variables.

A component reads these with in-cluster defaults, so the same file runs on Kubeflow::

    host = os.environ.get("MODEL_REGISTRY_HOST", "http://model-registry-service.kubeflow.svc.cluster.local")
    port = int(os.environ.get("MODEL_REGISTRY_PORT", "8080"))
"""

from __future__ import annotations

from kfbox.config import Settings


def task_environment(settings: Settings) -> dict[str, str]:
    # a wildcard bind is reachable on loopback; tasks run on this machine
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    shown = f"[{host}]" if ":" in host else host
    env = {
        "KFBOX_URL": f"http://{shown}:{settings.port}",
        "KFBOX_PVC_ROOT": str(settings.pvc_dir),
        "MODEL_REGISTRY_HOST": f"http://{shown}",
        "MODEL_REGISTRY_PORT": str(settings.port),
    }
    if settings.token:
        env["MODEL_REGISTRY_TOKEN"] = settings.token
        env["KFBOX_TOKEN"] = settings.token  # for the serving API (e.g. kubernetes' CustomObjectsApi at KFBOX_URL)
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
