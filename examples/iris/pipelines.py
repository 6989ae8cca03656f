"""The iris workflow, written once for kfbox and for a Kubeflow cluster.

Two KFP pipelines:

* ``iris_training``: load iris -> normalise (exactly one scaler) -> ParallelFor over
  ``neighbors`` training KNN classifiers -> register each in the Model Registry as
  ``KNN_<k>``, version ``<version>``, with its accuracy and scaler.
* ``iris_model_selection``: pick the best registered model of ``<version>`` by a metric,
  copy it to the PVC ``model-pvc`` at ``models/<name>/<version>/model/`` and create or
  update the InferenceService ``sklearn-inference`` from ``inference.yaml``.

Each component finds the platform from its environment. On kfbox the executor sets
``MODEL_REGISTRY_HOST``/``MODEL_REGISTRY_PORT``, ``KFBOX_URL`` and ``KFBOX_PVC_ROOT``;
on a cluster they are absent and the components fall back to the in-cluster service
names, the PVC mounted at ``/mnt/models`` and the Kubernetes API.

Compile with ``kfbox compile examples/iris/pipelines.py:iris_training -o training.yaml``.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import json
from pathlib import Path
from typing import NamedTuple

import yaml
from kfp import dsl, kubernetes
from kfp.dsl import Dataset, Input, Metrics, Model, Output

HERE = Path(__file__).resolve().parent
SKLEARN = ["scikit-learn>=1.4"]
REGISTRY = ["scikit-learn>=1.4", "model-registry>=0.3.15"]
KUBERNETES = ["kubernetes>=30"]
MODEL_PVC = "model-pvc"
PVC_MOUNT_PATH = "/mnt/models"
BASE_IMAGE = "python:3.11"
IRIS_UCI_CSV = "https://archive.ics.uci.edu/ml/machine-learning-databases/iris/iris.data"


def inference_manifest() -> str:
    """``inference.yaml`` as JSON, baked into the selection pipeline: a cluster task can't read the repo."""
    return json.dumps(yaml.safe_load((HERE / "inference.yaml").read_text()))


@dsl.component(base_image=BASE_IMAGE, packages_to_install=SKLEARN)
def load_iris_data(source: str, data: Output[Dataset]) -> int:
    """Write iris as CSV (Sepal_Length, Sepal_Width, Petal_Length, Petal_Width, Labels); return the row count.

    ``source`` is ``sklearn`` (the copy bundled with scikit-learn: works offline) or the
    URL of the original UCI CSV (needs network).
    """
    import csv
    import urllib.request

    header = ["Sepal_Length", "Sepal_Width", "Petal_Length", "Petal_Width", "Labels"]
    if source == "sklearn":
        from sklearn.datasets import load_iris

        iris = load_iris()
        rows = [[*map(float, x), int(y)] for x, y in zip(iris.data, iris.target, strict=True)]
    elif source.startswith(("http://", "https://")):
        names = {"Iris-setosa": 0, "Iris-versicolor": 1, "Iris-virginica": 2}
        with urllib.request.urlopen(source, timeout=30) as reply:
            lines = reply.read().decode().splitlines()
        rows = [[*map(float, parts[:4]), names[parts[4]]] for parts in csv.reader(lines) if len(parts) == 5]
    else:
        raise ValueError(f"data source {source!r} is neither 'sklearn' nor an http(s) URL of the UCI iris CSV")
    with open(data.path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    data.metadata["rows"] = len(rows)
    return len(rows)


@dsl.component(base_image=BASE_IMAGE, packages_to_install=SKLEARN)
def normalize_data(
    data: Input[Dataset], standard_scaler: bool, min_max_scaler: bool, normalized: Output[Dataset],
    scaler: Output[Model],
) -> str:
    """Fit exactly one scaler on the features; write the scaled data and the fitted scaler. Returns its name."""
    import csv

    import joblib
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if standard_scaler == min_max_scaler:
        raise ValueError("choose exactly one scaler: standard_scaler=True or min_max_scaler=True "
                         f"(got standard_scaler={standard_scaler}, min_max_scaler={min_max_scaler})")
    name = "standard_scaler" if standard_scaler else "min_max_scaler"
    with open(data.path, newline="") as src:
        reader = csv.reader(src)
        header = next(reader)
        rows = [list(map(float, r)) for r in reader]
    features = [r[:4] for r in rows]
    fitted = (StandardScaler() if standard_scaler else MinMaxScaler()).fit(features)
    scaled = fitted.transform(features)
    with open(normalized.path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows([[*map(float, x), int(r[4])] for x, r in zip(scaled, rows, strict=True)])
    joblib.dump(fitted, scaler.path)
    scaler.metadata["scaler"] = name
    return name


@dsl.component(base_image=BASE_IMAGE, packages_to_install=SKLEARN)
def train_knn(
    data: Input[Dataset], scaler: Input[Model], neighbors: int, model: Output[Model], metrics: Output[Metrics],
) -> float:
    """Train a KNN on 80% of the scaled data, report accuracy on the other 20%.

    The saved model is ``scaler -> knn`` in one sklearn Pipeline, so the served model
    takes raw measurements. It is written as ``<model.path>/model.joblib``, the layout
    KServe's sklearn runtime loads.
    """
    import csv
    import os

    import joblib
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline

    with open(data.path, newline="") as src:
        reader = csv.reader(src)
        next(reader)
        rows = [list(map(float, r)) for r in reader]
    x = [r[:4] for r in rows]
    y = [int(r[4]) for r in rows]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
    knn = KNeighborsClassifier(n_neighbors=neighbors).fit(x_train, y_train)
    accuracy = float(knn.score(x_test, y_test))
    fitted_scaler = joblib.load(scaler.path)
    os.makedirs(model.path, exist_ok=True)
    joblib.dump(Pipeline([("scaler", fitted_scaler), ("knn", knn)]), os.path.join(model.path, "model.joblib"))
    model.metadata.update({"framework": "sklearn", "neighbors": neighbors, "accuracy": accuracy})
    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("neighbors", neighbors)
    return accuracy


@dsl.component(base_image=BASE_IMAGE, packages_to_install=REGISTRY)
def register_model(
    model: Input[Model], accuracy: float, neighbors: int, scaler: str, version: str, author: str,
) -> str:
    """Register ``KNN_<neighbors>`` version ``version`` with its accuracy, scaler and artifact URI."""
    import os

    import sklearn

    try:  # on kfbox: its client, the same calls and REST API over one keep-alive connection
        from kfbox.client.registry import RegistryClient as ModelRegistry
    except ImportError:  # an image without kfbox (a cluster): the upstream client
        from model_registry import ModelRegistry

    host = os.environ.get("MODEL_REGISTRY_HOST", "http://model-registry-service.kubeflow.svc.cluster.local")
    port = int(os.environ.get("MODEL_REGISTRY_PORT", "8080"))
    registry = ModelRegistry(host, port, author=author, is_secure=False,
                             user_token=os.environ.get("MODEL_REGISTRY_TOKEN") or None)
    uri = model.uri
    if uri.startswith("minio://"):  # KFP's default bucket on a cluster; KServe reads it as S3
        uri = "s3://" + uri.removeprefix("minio://")
    elif "://" not in uri:
        uri = "file://" + os.path.abspath(model.path)
    name = f"KNN_{neighbors}"
    registry.register_model(
        name, uri, model_format_name="sklearn", model_format_version=sklearn.__version__, version=version,
        version_description=f"KNN with k={neighbors}, {scaler}",
        metadata={"accuracy": float(accuracy), "scaler": scaler, "neighbors": int(neighbors)},
    )
    print(f"registered {name} {version} accuracy={accuracy:.4f} uri={uri}")
    return name


@dsl.component(base_image=BASE_IMAGE, packages_to_install=REGISTRY)
def select_best_model(
    version: str, metric: str, author: str,
) -> NamedTuple("BestModel", [("model_name", str), ("model_uri", str), ("metric_value", float)]):  # type: ignore[valid-type]
    """Among registered models that have live version ``version``, the one with the highest ``metric``.

    Ties go to the model whose name sorts first, so the choice is deterministic.
    """
    import os

    try:  # on kfbox: its client, the same calls and REST API over one keep-alive connection
        from kfbox.client.registry import RegistryClient as ModelRegistry
    except ImportError:  # an image without kfbox (a cluster): the upstream client
        from model_registry import ModelRegistry

    host = os.environ.get("MODEL_REGISTRY_HOST", "http://model-registry-service.kubeflow.svc.cluster.local")
    port = int(os.environ.get("MODEL_REGISTRY_PORT", "8080"))
    registry = ModelRegistry(host, port, author=author, is_secure=False,
                             user_token=os.environ.get("MODEL_REGISTRY_TOKEN") or None)
    candidates = []
    for registered in registry.get_registered_models():
        found = registry.get_model_version(registered.name, version)
        if found is None or str(found.state).upper().endswith("ARCHIVED"):
            continue
        value = (found.custom_properties or {}).get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            candidates.append((-float(value), registered.name))
            print(f"candidate {registered.name} {version}: {metric}={value}")
    if not candidates:
        raise ValueError(f"no registered model has version {version!r} with a numeric {metric!r}; "
                         "run the training pipeline for that version first")
    negated, name = min(candidates)
    artifact = registry.get_model_artifact(name, version)
    if artifact is None or not artifact.uri:
        raise ValueError(f"{name} {version} has no model artifact")
    print(f"selected {name} {version} with {metric}={-negated}")
    return (name, artifact.uri, -negated)  # KFP maps the tuple onto the NamedTuple's fields in order


@dsl.component(base_image=BASE_IMAGE, packages_to_install=["boto3"])
def copy_model_to_pvc(model_uri: str, model_name: str, version: str, pvc_name: str, mount_path: str) -> str:
    """Copy the model folder to ``<pvc>/models/<name>/<version>/model/``; return its ``pvc://`` URI.

    On kfbox the PVC is the folder ``$KFBOX_PVC_ROOT/<pvc_name>``; on a cluster it is
    mounted at ``mount_path``.
    """
    import os
    import shutil
    from urllib.parse import urlparse

    root = os.path.join(os.environ["KFBOX_PVC_ROOT"], pvc_name) if os.environ.get("KFBOX_PVC_ROOT") else mount_path
    relative = f"models/{model_name}/{version}/model"
    dest = os.path.join(root, relative)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    parsed = urlparse(model_uri)
    if parsed.scheme == "file":
        source = parsed.path
        if os.path.isdir(source):
            shutil.copytree(source, dest)
        else:
            os.makedirs(dest)
            shutil.copy2(source, dest)
    elif parsed.scheme == "s3":
        import boto3

        s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_S3_ENDPOINT") or os.environ.get("S3_ENDPOINT_URL"))
        prefix = parsed.path.lstrip("/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix):
            for item in page.get("Contents", []):
                target = os.path.join(dest, os.path.relpath(item["Key"], prefix))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                s3.download_file(parsed.netloc, item["Key"], target)
    else:
        raise ValueError(f"cannot copy a model from {model_uri!r}: only file:// and s3:// URIs are supported")
    print(f"copied {model_uri} -> {dest}")
    return f"pvc://{pvc_name}/{relative}"


@dsl.component(base_image=BASE_IMAGE, packages_to_install=KUBERNETES)
def deploy_inference_service(manifest: str, storage_uri: str) -> str:
    """Create or update the InferenceService of ``manifest`` with ``storage_uri``; return its name.

    The same Kubernetes client calls serve both places: kfbox answers the
    ``serving.kserve.io/v1beta1`` API at ``KFBOX_URL``; on a cluster they go to the
    Kubernetes API with the pipeline's service account.
    """
    import json
    import os

    from kubernetes import client, config

    isvc = json.loads(manifest)
    isvc["spec"]["predictor"]["model"]["storageUri"] = storage_uri
    name, namespace = isvc["metadata"]["name"], isvc["metadata"].get("namespace", "default")
    group, api_version, plural = "serving.kserve.io", "v1beta1", "inferenceservices"
    platform = os.environ.get("KFBOX_URL")
    if platform:
        configuration = client.Configuration(host=platform)
        if os.environ.get("KFBOX_TOKEN"):
            configuration.api_key = {"authorization": os.environ["KFBOX_TOKEN"]}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        api = client.CustomObjectsApi(client.ApiClient(configuration))
    else:
        config.load_incluster_config()
        api = client.CustomObjectsApi()
    try:
        api.get_namespaced_custom_object(group, api_version, namespace, plural, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        api.create_namespaced_custom_object(group, api_version, namespace, plural, isvc)
        print(f"created {namespace}/{name} with storageUri {storage_uri}")
    else:
        api.patch_namespaced_custom_object(group, api_version, namespace, plural, name, isvc)
        print(f"updated {namespace}/{name} with storageUri {storage_uri}")
    return name


@dsl.pipeline(name="iris-training", description="Train KNN classifiers on iris and register each with its accuracy.")
def iris_training(
    neighbors: list = [2, 6, 9],  # noqa: B006 - KFP reads the default from the signature
    standard_scaler: bool = True,
    min_max_scaler: bool = False,
    version: str = "v1",
    data_source: str = "sklearn",
    author: str = "kfbox",
) -> None:
    data = load_iris_data(source=data_source)
    scaled = normalize_data(data=data.outputs["data"], standard_scaler=standard_scaler,
                            min_max_scaler=min_max_scaler)
    with dsl.ParallelFor(neighbors) as k:
        trained = train_knn(data=scaled.outputs["normalized"], scaler=scaled.outputs["scaler"], neighbors=k)
        registered = register_model(model=trained.outputs["model"], accuracy=trained.outputs["Output"], neighbors=k,
                                    scaler=scaled.outputs["Output"], version=version, author=author)
        registered.set_caching_options(False)  # registration is a side effect: never replay it from cache


@dsl.pipeline(name="iris-model-selection",
              description="Select the best registered iris model of a version and serve it with KServe.")
def iris_model_selection(
    version: str = "v1",
    metric: str = "accuracy",
    author: str = "kfbox",
    manifest: str = inference_manifest(),
) -> None:
    best = select_best_model(version=version, metric=metric, author=author)
    best.set_caching_options(False)  # the registry changes between runs
    pvc = kubernetes.CreatePVC(pvc_name=MODEL_PVC, access_modes=["ReadWriteOnce"], size="1Gi",
                               storage_class_name="standard")
    copied = copy_model_to_pvc(model_uri=best.outputs["model_uri"], model_name=best.outputs["model_name"],
                               version=version, pvc_name=MODEL_PVC, mount_path=PVC_MOUNT_PATH)
    copied.set_caching_options(False)
    kubernetes.mount_pvc(copied, pvc_name=pvc.outputs["name"], mount_path=PVC_MOUNT_PATH)
    deployed = deploy_inference_service(manifest=manifest, storage_uri=copied.output)
    deployed.set_caching_options(False)
