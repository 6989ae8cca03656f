"""A custom ``kserve.Model`` predictor, and deployments that survive a server restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.serving.helpers import API, ROWS, apply, expected, manifest, status, train_iris, v1, wait_for, wait_ready
from tests.support import ServerProcess

CUSTOM = '''
import os
from kserve import Model


class Doubler(Model):
    """Answers each row with its sum, doubled; reads a factor file from its model folder."""

    def load(self):
        folder = os.environ.get("KFBOX_MODEL_DIR")
        self.factor = float(open(os.path.join(folder, "factor.txt")).read()) if folder else 2.0
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        return {"predictions": [sum(row) * self.factor for row in payload["instances"]]}
'''


async def grpc_infer(address: str) -> list[int]:
    """A V2 gRPC call with the upstream kserve client, straight to a replica (gRPC stays on loopback)."""
    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    assert address.startswith("127.0.0.1:")
    client = InferenceGRPCClient(url=address)
    tensor = InferInput(name="input-0", shape=[len(ROWS), 4], datatype="FP64")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64))
    try:
        reply = await client.infer(InferRequest(model_name="iris", infer_inputs=[tensor]))
    finally:
        await client.close()
    return [int(v) for v in reply.outputs[0].as_numpy().tolist()]


def custom_manifest(code_dir: Path, pvc: str) -> dict[str, object]:
    body = manifest("doubler", pvc, fmt="custom",
                    annotations={"serving.kfbox.io/model-class": "doubler_model:Doubler",
                                 "serving.kfbox.io/python-path": str(code_dir)})
    return body


def test_custom_predictor_and_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    code = tmp_path / "code"
    code.mkdir()
    (code / "doubler_model.py").write_text(CUSTOM)
    (home / "pvc" / "custom" / "doubler").mkdir(parents=True)
    (home / "pvc" / "custom" / "doubler" / "factor.txt").write_text("3")
    model = train_iris(home / "pvc" / "models" / "iris")
    server = ServerProcess.start(home)
    try:
        with server.client() as client:
            apply(client, custom_manifest(code, "pvc://custom/doubler"))
            apply(client, manifest("iris", "pvc://models/iris", annotations={"serving.kfbox.io/enable-grpc": "true"}))
            wait_ready(client, "doubler")
            wait_ready(client, "iris")
            reply = v1(client, "doubler", [[1.0, 2.0], [3.0, 4.0]])
            assert reply.json() == {"predictions": [9.0, 21.0]}
            revision = status(client, "iris")["revisions"]["iris-predictor-00001"]
            assert asyncio.run(grpc_infer(revision["grpcEndpoints"][0])) == expected(model, ROWS)
            old_pids = revision["pids"]
        server.stop()
        assert not any(Path(f"/proc/{pid}").exists() for pid in old_pids)  # replicas die with the server

        server = ServerProcess.start(home)
        with server.client() as client:
            assert sorted(i["metadata"]["name"] for i in client.get(API.format(ns="default")).json()["items"]) == \
                ["doubler", "iris"]
            wait_ready(client, "iris")
            wait_ready(client, "doubler")
            assert v1(client, "iris").json() == {"predictions": expected(model, ROWS)}
            assert v1(client, "doubler", [[1.0, 1.0]]).json() == {"predictions": [6.0]}
            assert client.delete(API.format(ns="default") + "/doubler").status_code == 200
            assert v1(client, "doubler").status_code == 404
            wait_for(lambda: "doubler" not in client.get("/metrics").text.split("kfbox_serving_replicas", 1)[1]
                     .split("# HELP", 1)[0], 10, "doubler's replica gauge to go")
            pids = status(client, "iris")["revisions"]["iris-predictor-00001"]["pids"]
        server.kill()  # SIGKILL: no shutdown hook runs, yet the replicas must not outlive the server
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10, "orphaned replicas to exit")
    finally:
        server.stop()
