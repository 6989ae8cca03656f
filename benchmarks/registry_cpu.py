"""CPU of one registration inside the server: the whole app in-process, this checkout against a peer tree.

``benchmarks/registry.py`` measures kfbox against MLflow over real sockets; on a machine where other
work takes the cores, wall-clock rates there swing with the load. This one counts CPU seconds, which
do not: the full ASGI app (every middleware, the registry routes, SQLite in WAL mode) is driven by an
``httpx.AsyncClient`` over ``httpx.ASGITransport`` in one process, and a registration is what the
upstream client sends for a model that is new -- model, version (with a property), model artifact.
Each side runs in its own interpreter (``--peer-src`` names another tree's ``src/``, e.g. from
``git archive <commit> src | tar -x -C /tmp/before``), rounds alternate, medians are printed.

    .venv/bin/python benchmarks/registry_cpu.py [--rounds 5] [--per-round 200] [--peer-src /tmp/before/src]

The figure includes the in-process client's own CPU (httpx building requests and reading replies),
the same on both sides; the server's share is smaller than the total by that constant.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

V1 = "/api/model_registry/v1"


async def measure(count: int) -> float:
    """CPU ms per registration, after a warm-up, in this interpreter (whichever kfbox it imports)."""
    import httpx

    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.server.app import create_app
    from kfbox.server.platform import Platform

    with tempfile.TemporaryDirectory(prefix="kfbox-bench-registry-cpu-") as home:
        settings = Settings.load(home=Path(home), port=0, pipelines_spare_worker=False, serving_warm_standby=False)
        db = Database(settings.db_url)
        db.upgrade()
        app = create_app(settings, Platform(settings=settings, db=db))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            async def register(name: str) -> None:
                model = await http.post(f"{V1}/registered_models", json={"name": name, "owner": "bench"})
                assert model.status_code == 201, model.text
                version = await http.post(f"{V1}/model_versions", json={
                    "name": "v1", "registeredModelId": model.json()["id"], "author": "bench",
                    "customProperties": {"accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.97}}})
                assert version.status_code == 201, version.text
                artifact = await http.post(f"{V1}/model_versions/{version.json()['id']}/artifacts", json={
                    "artifactType": "model-artifact", "name": name, "uri": f"s3://bench/{name}",
                    "modelFormatName": "sklearn", "modelFormatVersion": "1"})
                assert artifact.status_code == 201, artifact.text

            for i in range(30):
                await register(f"warm-{i}")
            started = time.process_time()
            for i in range(count):
                await register(f"m-{i}")
            cpu = time.process_time() - started
        db.dispose()
    return 1000 * cpu / count


def side(src: Path | None, count: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run([sys.executable, __file__, "--one", str(count)], env=env, check=True,
                          capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--peer-src", type=Path, help="another kfbox source tree's src/ to compare against")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(asyncio.run(measure(args.one)))
        return
    sides: dict[str, Path | None] = {"this checkout": None}
    if args.peer_src:
        sides[f"peer {args.peer_src}"] = args.peer_src.resolve()
    figures: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.rounds):
        for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            figures[name].append(side(sides[name], args.per_round))
    print(f"CPU ms per registration (model + version + artifact, in-process, median of {args.rounds} rounds "
          f"of {args.per_round})")
    for name, values in figures.items():
        print(f"  {name:40s} {statistics.median(values):6.2f}   rounds: {' '.join(f'{v:.2f}' for v in values)}")
    if args.peer_src:
        this, peer = (statistics.median(v) for v in figures.values())
        print(f"  peer / this: {peer / this:.2f}x the CPU")


if __name__ == "__main__":
    main()
