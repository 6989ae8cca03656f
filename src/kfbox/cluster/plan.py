"""The install plan of Kubeflow 26.03 on Kind: upstream CI's order and waits, as a step graph.

Follows ``tests/*_install.sh`` of kubeflow/community-distribution at the pinned tag, with the
known workarounds applied everywhere: server-side apply with ``--force-conflicts`` for every
render (KServe's 360 KB CRD, kserve#3487); cert-manager's base applied and its webhook
endpoints waited on before the Issuers (manifests#2004); KServe's CRDs established before
its custom resources are applied again; ``--for=create`` instead of CI's fixed sleeps; the
M2M overlay that lets service-account tokens through the gateway (``m2m-dex-and-kind``).

Example::

    steps = build_plan(PlanOptions(name="kubeflow", home=Path("~/.kfbox"), components=DEFAULT_COMPONENTS))
    [s.name for s in steps]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kfbox.cluster import monitoring
from kfbox.cluster.dex import secret_yaml
from kfbox.cluster.kindconfig import kind_config
from kfbox.cluster.names import check_cluster_name
from kfbox.cluster.release import REPOSITORY, Release, release
from kfbox.cluster.runner import Command
from kfbox.cluster.steps import Action, Kube, Probe, Step
from kfbox.errors import InvalidInput

PROFILE_NAMESPACE = "kubeflow-user-example-com"
COMPONENTS = ("pipelines", "kserve", "model-registry", "monitoring")
DEFAULT_COMPONENTS = ("pipelines", "kserve", "model-registry")
PIPELINE_DEPLOYMENTS = ("ml-pipeline", "ml-pipeline-ui", "ml-pipeline-persistenceagent",
                        "ml-pipeline-scheduledworkflow", "ml-pipeline-viewer-crd", "cache-server", "metadata-writer",
                        "seaweedfs", "mysql")


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    name: str = "kubeflow"
    home: Path = Path("~/.kfbox")
    manifests_ref: str = "26.03"
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    workers: int = 2
    renderer: tuple[str, ...] = ("kubectl", "kustomize")
    dex_password_hash: str | None = dataclasses.field(default=None, repr=False)
    """None keeps upstream's default password (12341234)."""

    @property
    def release(self) -> Release:
        return release(self.manifests_ref)

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    @property
    def checkout(self) -> Path:
        return self.home / "cluster" / "manifests" / self.manifests_ref


def parse_components(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [c for c in chosen if c not in COMPONENTS]
    if unknown:
        raise InvalidInput(f"Unknown component(s) {', '.join(map(repr, unknown))}. "
                           f"Choose from: {','.join(COMPONENTS)} (e.g. --components pipelines,kserve)")
    return chosen


def manifests_step(opts: PlanOptions) -> Step:
    rel, checkout = opts.release, opts.checkout
    rev_parse = Command(("git", "-C", str(checkout), "rev-parse", "HEAD"), timeout=30)
    clone = Command(("git", "-c", "advice.detachedHead=false", "clone", "--depth", "1", "--branch", rel.ref,
                     REPOSITORY, str(checkout)), timeout=600)
    return Step("manifests", f"Fetch kubeflow/community-distribution {rel.ref} (commit {rel.commit[:7]})",
                actions=(Action("remove", Command(("true",)), path=checkout), Action("run", clone),
                         Action("verify", rev_parse, expect=rel.commit)),
                probe=Probe(rev_parse, rel.commit), attempts=2)


def cluster_step(opts: PlanOptions, kube: Kube) -> Step:
    config = kind_config(opts.release, opts.workers)
    create = Command(("kind", "create", "cluster", "--name", opts.name, "--config", "-", "--wait", "120s"),
                     stdin=config, stdin_label="<kind config: 1 control-plane + "
                     f"{opts.workers} workers, {opts.release.node_image.split('@')[0]}>", timeout=900)
    return Step("cluster", f"Kind cluster {opts.name!r}", needs=("manifests",),
                actions=(Action("run", create), kube.wait("nodes", "--all", condition="Ready", timeout=300)),
                probe=Probe(Command(("kind", "get", "clusters"), timeout=30), opts.name), attempts=1)


def platform_steps(opts: PlanOptions, kube: Kube) -> list[Step]:
    dex_actions: list[Action] = [kube.apply("common/dex/overlays/oauth2-proxy")]
    if opts.dex_password_hash:
        dex_actions += [kube.apply_text(secret_yaml(opts.dex_password_hash), "<Secret auth/dex-passwords: bcrypt>"),
                        kube.run("rollout", "restart", "deployment/dex", "-n", "auth")]
    dex_actions.append(kube.rollout("deployment/dex", "auth"))
    return [
        Step("kubeflow-namespace", "Namespace kubeflow", ("cluster",),
             (kube.apply("common/kubeflow-namespace/base"),)),
        Step("cert-manager", "cert-manager (webhook serving before the Issuers)", ("kubeflow-namespace",), (
            kube.apply("common/cert-manager/base"),
            kube.wait("pod", "-l", "app=webhook", "-n", "cert-manager", condition="Ready"),
            kube.endpoints_have_pod("cert-manager", "-l", "app in (cert-manager,webhook)"),
            kube.apply("common/cert-manager/overlays/kubeflow"),
            kube.wait("pod", "-l", "app.kubernetes.io/instance=cert-manager", "-n", "cert-manager",
                      condition="Ready"),
            kube.wait("clusterissuer/kubeflow-self-signing-issuer", condition="Ready", timeout=120),
        )),
        Step("istio", "Istio (CNI mode) with the oauth2-proxy ext-authz", ("cert-manager",), (
            kube.apply("common/istio/istio-crds/base"),
            kube.established("authorizationpolicies.security.istio.io"),
            kube.apply("common/istio/istio-namespace/base"),
            kube.apply("common/istio/istio-install/overlays/oauth2-proxy"),
            *kube.available("istio-system", "istiod", "istio-ingressgateway"),
            kube.rollout("daemonset/istio-cni-node", "kube-system"),
        )),
        Step("oauth2-proxy", "oauth2-proxy (m2m-dex-and-kind: service-account tokens pass the gateway)",
             ("istio",), (
                 kube.apply("common/oauth2-proxy/overlays/m2m-dex-and-kind"),
                 kube.wait("pod", "-l", "app.kubernetes.io/name=oauth2-proxy", "-n", "oauth2-proxy",
                           condition="Ready"),
                 kube.wait("pod", "-l", "app.kubernetes.io/name=cluster-jwks-proxy", "-n", "istio-system",
                           condition="Ready"),
                 *kube.available("oauth2-proxy", "oauth2-proxy"),
             )),
        Step("kubeflow-istio-resources", "Gateway kubeflow/kubeflow-gateway", ("istio", "kubeflow-namespace"),
             (kube.apply("common/istio/kubeflow-istio-resources/base"),)),
        Step("multi-tenancy", "Profiles controller and Kubeflow roles", ("kubeflow-istio-resources",), (
            kube.apply("applications/profiles/pss"),
            kube.rollout("deployment/profiles-deployment", "kubeflow"),
            kube.apply("common/kubeflow-roles/base"),
        )),
        Step("dex", "Dex (user@example.com)", ("oauth2-proxy",), tuple(dex_actions)),
        Step("dashboard", "Central dashboard", ("multi-tenancy", "dex"), (
            kube.apply("applications/centraldashboard/overlays/oauth2-proxy"),
            *kube.available("kubeflow", "centraldashboard"),
        )),
    ]


def kserve_steps(kube: Kube) -> list[Step]:
    return [
        Step("knative", "Knative Serving with the Istio gateways", ("istio", "kubeflow-istio-resources"), (
            kube.apply("common/knative/knative-serving/overlays/gateways", first_pass=True),
            kube.established("services.serving.knative.dev"),
            *kube.available("knative-serving", "webhook", timeout=300),
            kube.apply("common/knative/knative-serving/overlays/gateways"),
            kube.apply("common/istio/cluster-local-gateway/overlays/m2m-auth"),
            kube.apply("common/istio/kubeflow-istio-resources/base"),
            *kube.available("knative-serving", "activator", "autoscaler", "controller", timeout=300),
        )),
        Step("kserve", "KServe (server-side: its CRD is over the 256 KB annotation limit)",
             ("knative", "cert-manager"), (
                 kube.apply("applications/kserve/kserve", first_pass=True),
                 kube.wait("certificate/serving-cert", "-n", "kubeflow", condition="Ready", timeout=120),
                 kube.wait("secret/kserve-webhook-server-cert", "-n", "kubeflow", condition="create", timeout=120),
                 kube.established("clusterservingruntimes.serving.kserve.io"),
                 kube.established("inferenceservices.serving.kserve.io"),
                 *kube.available("kubeflow", "kserve-controller-manager", timeout=600),
                 kube.endpoints_have_pod("kubeflow", "kserve-webhook-server-service"),
                 kube.apply("applications/kserve/kserve"),
                 kube.apply("applications/kserve/models-web-app/overlays/kubeflow"),
                 *kube.available("kubeflow", "kserve-models-web-app", timeout=300),
             )),
    ]


def pipelines_step(kube: Kube) -> Step:
    return Step("pipelines", "Kubeflow Pipelines with SeaweedFS", ("cert-manager", "istio", "multi-tenancy"), (
        kube.apply_file("applications/pipeline/upstream/third-party/metacontroller/base/crd.yaml"),
        kube.established("compositecontrollers.metacontroller.k8s.io", timeout=30),
        kube.apply("applications/pipeline/overlays"),
        *kube.available("kubeflow", *PIPELINE_DEPLOYMENTS, timeout=600),
    ))


def profile_step(kube: Kube, components: tuple[str, ...]) -> Step:
    needs = ("multi-tenancy", *(("pipelines",) if "pipelines" in components else ()))
    actions = [
        kube.apply("common/user-namespace/base"),
        kube.wait(f"namespace/{PROFILE_NAMESPACE}", condition="create", timeout=120),
        kube.run("label", "namespace", PROFILE_NAMESPACE, "pod-security.kubernetes.io/enforce=baseline",
                 "--overwrite"),
        kube.wait("serviceaccount/default-editor", "-n", PROFILE_NAMESPACE, condition="create", timeout=120),
    ]
    if "pipelines" in components:
        actions.append(kube.wait("secret/mlpipeline-minio-artifact", "-n", PROFILE_NAMESPACE, condition="create",
                                 timeout=180))
    return Step("profile", f"Profile {PROFILE_NAMESPACE} (owner user@example.com)", needs, tuple(actions))


def model_registry_step(kube: Kube, components: tuple[str, ...]) -> Step:
    base = "applications/model-registry/upstream"
    actions = [kube.apply(f"{base}/overlays/db", namespace="kubeflow"),
               kube.apply(f"{base}/options/istio", namespace="kubeflow"),
               kube.apply(f"{base}/options/ui/overlays/istio", namespace="kubeflow")]
    needs: tuple[str, ...] = ("kubeflow-istio-resources",)
    if "kserve" in components:
        # the model-registry:// storage initializer is a KServe ClusterStorageContainer
        actions.append(kube.apply(f"{base}/options/csi", namespace="kubeflow"))
        needs += ("kserve",)
    actions += kube.available("kubeflow", "model-registry-db", "model-registry-deployment", "model-registry-ui",
                              timeout=300)
    return Step("model-registry", "Model Registry (REST at /api/model_registry/v1alpha3)", needs, tuple(actions))


def build_plan(opts: PlanOptions) -> list[Step]:
    """Every step, dependencies first (the order upstream's full integration test installs in)."""
    check_cluster_name(opts.name)
    components = opts.components
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise InvalidInput(f"Unknown component(s) {unknown}; choose from {','.join(COMPONENTS)}")
    kube = Kube(opts.context, opts.renderer, opts.checkout)
    steps = [manifests_step(opts), cluster_step(opts, kube), *platform_steps(opts, kube)]
    if "kserve" in components:
        steps += kserve_steps(kube)
    if "pipelines" in components:
        steps.append(pipelines_step(kube))
    if {"pipelines", "kserve", "model-registry"} & set(components):
        steps.append(profile_step(kube, components))
    if "model-registry" in components:
        steps.append(model_registry_step(kube, components))
    if "monitoring" in components:
        steps.append(monitoring.monitoring_step(kube))
    check_graph(steps)
    return steps


def check_graph(steps: list[Step]) -> None:
    """Each step's needs come before it (so running in list order is a topological order)."""
    seen: set[str] = set()
    for step in steps:
        missing = [need for need in step.needs if need not in seen]
        if missing:
            raise InvalidInput(f"Step {step.name!r} needs {missing}, which the plan does not install before it")
        seen.add(step.name)
