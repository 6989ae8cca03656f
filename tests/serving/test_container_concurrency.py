"""``spec.predictor.containerConcurrency``, Knative's hard limit of requests at one replica, on a real
``kfbox up --data-plane haproxy``: through kfbox's own gateway (its port) and through HAProxy (the ingress
port), a replica of the gated model is never sent more than that many requests at once; the others wait
(in the gateway, in HAProxy's queue) and are answered once the replica has room. The model writes the most
requests it has held at once; the test opens the gate only once the extra requests are seen waiting (or, on a
data plane that does not wait, seen at the replica), so no assertion depends on timing."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.helpers import (
    API,
    apply,
    gated_annotations,
    gated_model,
    haproxy,
    haproxy_ports,
    ingress_url,
    kfbox,
    manifest,
    status,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess

NAME = "single"
REVISION = "single-predictor-00001"
PATH = f"/serving/default/{NAME}/v1/models/{NAME}:predict"
HELD = 3
"""Requests sent at once to a service whose one replica takes one."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` with the HAProxy data plane serving ``single``: the gated model, one replica,
    ``containerConcurrency: 1``."""
    if shutil.which("haproxy") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")
    home = tmp_path_factory.mktemp("home")
    proc = ServerProcess.start(home, extra_env={"KFBOX_DATA_PLANE": "haproxy", "KFBOX_INGRESS_PORT": "0"})
    gated_model(home / "code")
    with proc.client() as client:
        apply(client, manifest(NAME, None, fmt="custom", min_replicas=1, max_replicas=1, container_concurrency=1,
                               annotations=gated_annotations(home / "code")))
        wait_ready(client, NAME)
    wait_for(lambda: haproxy_ports(home, NAME), 30, f"HAProxy routing to {NAME}")
    yield proc
    proc.stop()


def most_at_once(record: Path) -> int:
    """The most requests the replica held at once, as the gated model wrote it (0 before the first)."""
    text = record.read_text() if record.exists() else ""
    return int(text) if text else 0


def hold(url: str, gate: Path, record: Path, waiting: Callable[[], int]) -> None:
    """Send HELD requests at once to ``url``, open the gate once all but one are ``waiting`` (or the replica
    holds more than one), and check every request is answered and the replica never held two at once."""
    replies: list[httpx.Response | Exception] = []

    def send() -> None:
        try:
            replies.append(httpx.post(url + PATH, json={"gate": str(gate), "count": str(record)}, timeout=60))
        except httpx.HTTPError as exc:
            replies.append(exc)

    threads = [threading.Thread(target=send) for _ in range(HELD)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: most_at_once(record) > 1 or (most_at_once(record) == 1 and waiting() == HELD - 1), 30,
                 f"one request at the replica and {HELD - 1} waiting")
    finally:
        gate.touch()
        for thread in threads:
            thread.join(60)
    assert [r.status_code if isinstance(r, httpx.Response) else r for r in replies] == [200] * HELD, replies
    assert [r.json() for r in replies if isinstance(r, httpx.Response)] == [{"predictions": ["released"]}] * HELD
    assert most_at_once(record) == 1


def test_kfbox_gateway_sends_one_request_at_a_time_and_holds_the_others(server: ServerProcess,
                                                                          tmp_path: Path) -> None:
    with server.client() as client:
        def queued() -> int:
            return int(status(client, NAME)["revisions"][REVISION].get("queued") or 0)

        hold(server.url, tmp_path / "gate", tmp_path / "most", queued)
        assert queued() == 0


def test_haproxy_sends_one_request_at_a_time_and_queues_the_others(server: ServerProcess, tmp_path: Path) -> None:
    def queued() -> int:
        """Requests in HAProxy's queue for the service (its backend's and its servers'), from ``show stat``."""
        lines = haproxy(server.home, "@1 show stat -1 6 -1").splitlines()
        if not lines or not lines[0].startswith("# "):
            return 0
        columns = lines[0][2:].split(",")
        rows = [dict(zip(columns, line.split(","), strict=False)) for line in lines[1:] if line]
        return sum(int(row["qcur"] or 0) for row in rows if row["pxname"] == f"svc_default_{NAME}")

    hold(ingress_url(server.home), tmp_path / "gate", tmp_path / "most", queued)


def test_the_limit_is_shown_where_kserve_and_knative_show_it(server: ServerProcess) -> None:
    """The InferenceService's status, its page and ``kfbox serve get`` say it; the Knative Service has it in
    ``spec.template.spec``, where KServe copies it; Knative's KPA aims at min(target, containerConcurrency)."""
    with server.client() as client:
        scaling = status(client, NAME)["autoscaling"]
        assert (scaling["containerConcurrency"], scaling["target"]) == (1, 1)
        ksvc = client.get(f"/apis/serving.knative.dev/v1/namespaces/default/services/{NAME}-predictor")
        assert ksvc.status_code == 200, ksvc.text
        assert ksvc.json()["spec"]["template"]["spec"] == {"containerConcurrency": 1}
        listed = client.get(API.format(ns="default") + f"/{NAME}").json()
        assert listed["spec"]["predictor"]["containerConcurrency"] == 1  # kept as written
        page = client.get(f"/deployments/default/{NAME}", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "containerConcurrency 1 (requests at once a replica" in page.text
    shown = kfbox("serve", "get", NAME, url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert "containerConcurrency 1" in shown.stdout, shown.stdout


def test_an_unset_limit_reads_as_knatives_default_zero(server: ServerProcess) -> None:
    """KServe leaves the revision's containerConcurrency unset; Knative's defaulting webhook writes its
    config-defaults ``container-concurrency``, 0 (no limit), which ``kubectl get ksvc -o yaml`` then shows."""
    with server.client() as client:
        apply(client, manifest("unlimited", "pvc://models/none", min_replicas=0))  # minReplicas 0: no replica
        ksvc = client.get("/apis/serving.knative.dev/v1/namespaces/default/services/unlimited-predictor")
        assert ksvc.status_code == 200, ksvc.text
        assert ksvc.json()["spec"]["template"]["spec"] == {"containerConcurrency": 0}
        assert "containerConcurrency" not in status(client, "unlimited")["autoscaling"]


def test_a_limit_above_knatives_maximum_is_refused_naming_the_field(server: ServerProcess) -> None:
    with server.client() as client:
        reply = client.post(API.format(ns="default"), json=manifest("toomany", "pvc://models/none", min_replicas=0,
                                                                    container_concurrency=1001))
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["reason"] == "Invalid" and "container-concurrency-max-limit 1000" in body["message"], body
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.predictor.containerConcurrency"], body
