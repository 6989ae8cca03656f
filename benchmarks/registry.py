"""Model Registry benchmark: kfbox's registry against MLflow's model registry, like for like.

Both servers run at once on SQLite and are warmed before anything is timed (MLflow's
workers spend their first seconds importing: the run waits until both process trees are
idle, then registers a warm-up batch on each). Rounds are interleaved -- kfbox, MLflow,
MLflow, kfbox, ... -- so load on the machine falls on both sides alike; each table prints
medians over the rounds and the ratio kfbox/MLflow.

1. Registration over raw HTTP, one keep-alive client per side, twice: ``httpx.Client``, then the
   standard library's ``http.client.HTTPConnection`` (httpx spends ~0.5 ms of CPU a call, about as
   much as kfbox's server does, so that table measures the client nearly as much as the servers;
   the second shows the servers' difference with a client that takes ~0.15 ms). A registration
   is what each registry needs to know "model M, version v1, stored at URI": kfbox's
   model + version + model artifact (three calls, what ``ModelRegistry.register_model``
   sends), MLflow's registered model + model version (two calls; the version holds the
   source URI). Both carry one ``accuracy`` property/tag. The server-side CPU of each
   round (utime+stime of the whole process tree, from /proc) gives CPU ms/registration.
   ``--baseline-src`` adds another kfbox tree's server (e.g. the last release's ``src``) as a
   third side, in the same interleaved rounds: on a busy machine CPU seconds swell with the
   load, and the two kfbox figures then show what a change did under the same conditions. The
   baseline starts from an empty home, while this tree's holds the 10,000 versions seeded for
   table 3: if anything, a handicap for this tree.
2. Registration through the official clients: ``model_registry.ModelRegistry
   .register_model`` against ``MlflowClient.create_registered_model`` +
   ``create_model_version``.
3. Listing 10,000 versions of one model (raw HTTP pages of 10,000 on both sides); both
   stores are seeded in bulk through their own storage layer first.
4. ``kfbox up`` start-to-ready time (fresh home: migrations included) and idle RSS.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/registry.py [--rounds 7] [--per-round 40] [--client-per-round 10]

MLflow may live in a virtualenv of its own (its dependencies are many): ``--mlflow-python
/path/to/venv/bin/python`` runs its server and seeding from there (the official-client
table then needs ``--no-clients`` unless mlflow is importable here too), e.g.::

    python3 -m venv /work/peers/mlflow && /work/peers/mlflow/bin/pip install mlflow   # 3.17.2 here
    .venv/bin/python benchmarks/registry.py --mlflow-python /work/peers/mlflow/bin/python --no-clients

MLflow runs as ``mlflow server`` (uvicorn, 4 workers, SQLite) with three changes, printed at the
start of a run, that make the comparison like for like rather than a win by configuration:

* SQLite in WAL mode with ``synchronous=NORMAL``, as kfbox runs it (a ``sitecustomize`` on
  MLflow's ``PYTHONPATH`` sets both pragmas on each connection its SQLAlchemy pools open). MLflow
  ships SQLite's defaults -- a rollback journal, ``synchronous=FULL`` -- so each commit waits for
  three or more fsyncs; on this machine's disk an fsync takes ~6 ms (p90 13-100 ms): MLflow's
  store alone, in one process at load 12, registers 13-16/s as shipped and 25-26/s with these
  pragmas (one cause of its low rate here; the other is below);
* ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: the job runner and its seven Huey consumers poll
  for ever (~0.2 cores here) and do nothing for the model registry; on two cores they took CPU
  from both servers;
* uvicorn's worker health check raised so slow imports on a busy machine do not kill its workers.

``--mlflow-as-shipped`` drops the first two. MLflow's rate stays near 9/s with these, at ~4x its
CPU's worth: with 4 uvicorn workers every request takes >= 40 ms (p50 ~55 ms) where one worker
answers in 7-11 ms (36-59 registrations/s, this client, quiet machine) -- a 40 ms floor that looks
like Nagle against delayed ACK on the workers' inherited socket (not verified). So compare server
CPU per registration; for MLflow's best rate run with ``--mlflow-workers 1``. Server CPU is counted
over the processes that serve requests (kfbox's one, MLflow's workers).

Figures depend on the machine and its load: compare the ratios, not absolute numbers.
Goal: raw HTTP registration >= 5x MLflow.

The client is one Python process making one call at a time, so a side's wall time per registration is its
client's CPU plus its server's time: table 1 prints the client's CPU per registration (this process,
``time.process_time``) and the ratio kfbox would reach if its server took no time at all. kfbox's three
calls cost the client more than MLflow's two, so with httpx the rate ratio stays well below the server-CPU
ratio; with ``http.client`` the client's share is small on both sides and the rate ratio nears the CPU one.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from json import dumps, loads
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: --seed-mlflow runs in MLflow's virtualenv, which has no httpx
    import httpx

V1 = "/api/model_registry/v1"


class Reply:
    """What the registration functions read of a reply, from either client kind."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.content = status_code, body

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return loads(self.content)


class StdlibHttp:
    """One keep-alive ``http.client.HTTPConnection``: the leanest Python client there is. httpx spends
    ~0.6 ms of CPU on a call, more than kfbox's server does, so with httpx both sides' rates measure the
    client as much as the servers; this table drives both with this client instead."""

    def __init__(self, base_url: str) -> None:
        from urllib.parse import urlsplit

        url = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)

    def post(self, path: str, json: Any) -> Reply:
        body = dumps(json).encode()
        for attempt in (1, 2):  # a server closes a connection idle past its keep-alive timeout: open another
            try:
                self.connection.request("POST", path, body, {"content-type": "application/json"})
                reply = self.connection.getresponse()
                return Reply(reply.status, reply.read())
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> float:
    import httpx

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} not ready in {timeout}s")


@contextlib.contextmanager
def kfbox(home: Path, src: Path | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """``kfbox up`` of this checkout, or of another tree's ``src`` (``--baseline-src``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kfbox", "up", "--port", str(port), "--home", str(home)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/healthz", proc)
        yield url, proc, time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)


# kfbox's SQLite settings for MLflow's server: every connection its SQLAlchemy pools open
SITECUSTOMIZE = """\
from sqlalchemy import event
from sqlalchemy.pool import Pool


@event.listens_for(Pool, "connect")
def _kfbox_pragmas(dbapi_conn, _record):
    if type(dbapi_conn).__module__.startswith("sqlite3"):
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
"""


def mlflow_env(root: Path, as_shipped: bool) -> dict[str, str]:
    """MLflow's environment: kfbox's SQLite pragmas and no job runner, unless ``as_shipped``."""
    env = dict(os.environ)
    if as_shipped:
        return env
    site = root / "mlflow-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def sqlite_settings(db: Path) -> str:
    """The database's journal mode, which the server set (persistent in the file; synchronous is per connection)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]  # persistent: set by the server
    return f"journal_mode={mode}"


@contextlib.contextmanager
def mlflow_server(root: Path, python: str, workers_: int,
                  env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (root / "mlflow-server.log").open("wb")
    mlflow = Path(python).with_name("mlflow")
    # uvicorn's supervisor kills a worker that does not answer its health check within 5 s: on a
    # busy machine MLflow's workers are still importing then, die at start and are respawned for
    # minutes ("Child process [..] died"), so the check waits as long as a start may take here
    proc = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--default-artifact-root", (root / "artifacts").as_uri(), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers_), "--uvicorn-opts",
                             "--timeout-worker-healthcheck 180"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(f"{url}/health", proc, timeout=300)
        except RuntimeError:
            print((root / "mlflow-server.log").read_text()[-3000:], file=sys.stderr)
            raise
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def mlflow_version(python: str) -> str:
    return subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"], capture_output=True,
                          text=True, check=True).stdout.strip()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seed_kfbox(home: Path, versions: int) -> None:
    """Bulk-create one model with ``versions`` versions through kfbox's own store."""
    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.registry import kinds, store

    home.mkdir(parents=True, exist_ok=True)
    db = Database(Settings.load(home=home).db_url)
    db.upgrade()
    with db.write_core() as conn:
        model = store.create(conn, kinds.REGISTERED_MODEL, {"name": "bulk"})
        for i in range(versions):
            store.create(conn, kinds.MODEL_VERSION, {"name": f"v{i}", "author": "bench",
                                                     "customProperties": {"accuracy": {
                                                         "metadataType": "MetadataDoubleValue",
                                                         "double_value": 0.9}}}, parent=model)
    db.dispose()


def seed_mlflow(root: Path, versions: int) -> None:
    """Bulk-create one model with ``versions`` versions through MLflow's own SQLAlchemy models."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlRegisteredModel
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.orm import Session

    store = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}")
    store.create_registered_model("bulk")
    now = int(time.time() * 1000)
    with Session(store.engine) as session:
        session.add_all([SqlModelVersion(name="bulk", version=i + 1, creation_time=now, last_updated_time=now,
                                         user_id="bench", current_stage="None", source=f"s3://bulk/{i}",
                                         status="READY", **_workspace(SqlModelVersion))
                         for i in range(versions)])
        session.commit()
    assert SqlRegisteredModel is not None
    store.engine.dispose()


def _workspace(model: Any) -> dict[str, str]:
    return {"workspace": "default"} if "workspace" in model.__table__.c else {}




# -- process trees: server-side CPU and worker counts ------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (MLflow's server is a launcher plus workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo.extend(children.get(out[-1], []))
    return out


def cpu_s(pids: list[int]) -> float:
    """utime + stime of ``pids``, in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def cpu_rate(pids: list[int], window: float = 1.0) -> float:
    """Cores ``pids`` use over ``window`` seconds."""
    before = cpu_s(pids)
    time.sleep(window)
    return (cpu_s(pids) - before) / window


def wait_idle(pids: list[int], timeout: float = 120) -> float:
    """Wait until the trees' CPU settles: three 1 s windows in a row under 0.4 cores, within 0.05 of
    each other (MLflow's job runner polls for ever: settled, not zero). Seconds waited."""
    start, recent = time.perf_counter(), [cpu_rate(pids), cpu_rate(pids)]
    while time.perf_counter() - start < timeout:
        recent = [*recent[-2:], cpu_rate(pids)]
        if max(recent) < 0.4 and max(recent) - min(recent) < 0.05:
            break
    return time.perf_counter() - start


def serving(pid: int) -> list[int]:
    """Processes that serve requests: uvicorn's spawned workers, else the server itself. Server CPU
    is counted over these: MLflow's tree also holds a launcher and a job runner that polls its
    database for ever (~0.2 cores here), whose noise swamped the requests' cost when the whole
    tree was counted and its idle rate subtracted."""
    spawned = []
    for child in tree(pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                spawned.append(child)
    return spawned or [pid]


def workers(pid: int) -> int:
    return len(serving(pid))


# -- the two sides ---------------------------------------------------------------------------

Register = Callable[[str], None]


class Side:
    """One server under test: its registration call, its process tree, its per-round figures."""

    def __init__(self, name: str, pid: int, register: Register, idle: float = 0.0) -> None:
        self.name, self.pid, self.register = name, pid, register
        self.idle = idle  # cores the idle tree uses (MLflow's job runner polls): not the requests' cost
        self.rates: list[float] = []
        self.cpu_ms: list[float] = []
        self.client_ms: list[float] = []  # this process's CPU: the same httpx client on every side

    def round(self, tag: str, count: int) -> None:
        pids = serving(self.pid)
        cpu, start, client = cpu_s(pids), time.perf_counter(), time.process_time()
        for i in range(count):
            self.register(f"{tag}-{i}")
        elapsed = time.perf_counter() - start
        self.client_ms.append(1000 * (time.process_time() - client) / count)
        self.rates.append(count / elapsed)
        self.cpu_ms.append(1000 * max(0.0, cpu_s(pids) - cpu - self.idle * elapsed) / count)


def kfbox_raw(http: httpx.Client | StdlibHttp) -> Register:
    def register(name: str) -> None:
        model = http.post(f"{V1}/registered_models", json={"name": name, "owner": "bench"})
        assert model.status_code == 201, model.text
        version = http.post(f"{V1}/model_versions", json={
            "name": "v1", "registeredModelId": model.json()["id"], "author": "bench",
            "customProperties": {"accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.97}}})
        assert version.status_code == 201, version.text
        reply = http.post(f"{V1}/model_versions/{version.json()['id']}/artifacts", json={
            "artifactType": "model-artifact", "name": name, "uri": f"s3://bench/{name}",
            "modelFormatName": "sklearn", "modelFormatVersion": "1"})
        assert reply.status_code == 201, reply.text
    return register


def mlflow_raw(http: httpx.Client | StdlibHttp) -> Register:
    def register(name: str) -> None:
        model = http.post("/api/2.0/mlflow/registered-models/create", json={"name": name})
        assert model.status_code == 200, model.text
        version = http.post("/api/2.0/mlflow/model-versions/create", json={
            "name": name, "source": f"s3://bench/{name}", "tags": [{"key": "accuracy", "value": "0.97"}]})
        assert version.status_code == 200, version.text
    return register


def kfbox_client(url: str) -> Register:
    from model_registry import ModelRegistry

    host, port = url.rsplit(":", 1)
    client = ModelRegistry(host, int(port), author="bench", is_secure=False)

    def register(name: str) -> None:
        client.register_model(name, f"s3://bench/{name}", model_format_name="sklearn", model_format_version="1",
                              version="v1", metadata={"accuracy": 0.97})
    return register


def mlflow_client(url: str) -> Register:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)

    def register(name: str) -> None:
        client.create_registered_model(name)
        # await_creation_for=0: the server marks versions READY at once; don't count the client's polling
        client.create_model_version(name, f"s3://bench/{name}", tags={"accuracy": "0.97"}, await_creation_for=0)
    return register


def warm(side: Side, label: str, batch: int) -> int:
    """Register batches until three in a row run within 15% of each other, after at least five and
    20 s (at most 120 s): MLflow's workers import lazily and warm one by one, and on a busy machine
    that takes minutes -- a server still warming is not measured. Returns registrations spent."""
    rates: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < 120:
        began = time.perf_counter()
        for i in range(batch):
            side.register(f"{label}-warm-{len(rates)}-{i}")
        rates.append(batch / (time.perf_counter() - began))
        last = rates[-3:]
        if len(rates) >= 5 and time.perf_counter() - start > 20 and max(last) - min(last) <= 0.15 * max(last):
            break
    return batch * len(rates)


def interleave(sides: Sequence[Side], label: str, rounds: int, count: int, warmup: int) -> None:
    spent = [warm(side, label, warmup) for side in sides]
    for side in sides:  # what the idle tree burns (MLflow's job runner polls) is not the requests' cost
        side.idle = cpu_rate(serving(side.pid), 2)
    print(f"{label}: warm-up registrations " + ", ".join(f"{s.name} {n}" for s, n in zip(sides, spent, strict=True))
          + "; idle CPU after warm-up " + ", ".join(f"{s.name} {s.idle:.3f} cores" for s in sides)
          + " (subtracted from each round)")
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            side.round(f"{label}-{r}", count)


def table(title: str, sides: Sequence[Side], procs: Sequence[int]) -> None:
    """Medians per side; the last side is MLflow, and each kfbox side gets its ratio to it."""
    med = statistics.median
    *ours, ml = sides
    print(f"\n{title} (median of {len(ml.rates)} interleaved rounds)")
    print(f"{'':32}" + "".join(f"{s.name:>16}" for s in sides) + "".join(f"{'ratio ' + s.name:>22}" for s in ours))
    print(f"{'server processes':32}" + "".join(f"{n:16d}" for n in procs))
    print(f"{'registrations /s':32}" + "".join(f"{med(s.rates):16.1f}" for s in sides)
          + "".join(f"{med(s.rates) / med(ml.rates):21.2f}x" for s in ours))
    print(f"{'server CPU ms / registration':32}" + "".join(f"{med(s.cpu_ms):16.2f}" for s in sides)
          + "".join(f"{med(ml.cpu_ms) / max(med(s.cpu_ms), 1e-9):21.2f}x" for s in ours))
    print(f"{'client CPU ms / registration':32}" + "".join(f"{med(s.client_ms):16.2f}" for s in sides))
    # a side's rate cannot pass 1000 / its client CPU ms, however fast its server: the ratio's ceiling
    print(f"{'ratio if the server took 0 ms':32}" + " " * 16 * len(sides)
          + "".join(f"{1000 / med(s.client_ms) / med(ml.rates):21.2f}x" for s in ours))
    for side in sides:
        print(f"{'rounds /s ' + side.name:32}" + " ".join(f"{r:.0f}" for r in side.rates))
    for side in sides:
        print(f"{'CPU ms rounds ' + side.name:32}" + " ".join(f"{c:.2f}" for c in side.cpu_ms))


def list_kfbox(http: httpx.Client, versions: int) -> Callable[[], None]:
    model_id = http.get(f"{V1}/registered_model", params={"name": "bulk"}).json()["id"]

    def run() -> None:
        token, seen = "", 0
        while True:
            page = http.get(f"{V1}/registered_models/{model_id}/versions",
                            params={"pageSize": "10000", "nextPageToken": token}).json()
            seen += page["size"]
            token = page["nextPageToken"]
            if not token:
                break
        assert seen == versions, seen
    return run


def list_mlflow(http: httpx.Client, versions: int) -> Callable[[], None]:
    def run() -> None:
        token, seen = "", 0
        while True:
            params = {"filter": "name='bulk'", "max_results": "10000"} | ({"page_token": token} if token else {})
            page = http.get("/api/2.0/mlflow/model-versions/search", params=params).json()
            seen += len(page.get("model_versions", []))
            token = page.get("next_page_token", "")
            if not token:
                break
        assert seen == versions, seen
    return run


def startup(root: Path) -> tuple[list[float], list[float]]:
    starts, rss = [], []
    for i in range(3):
        with kfbox(root / f"fresh-{i}") as (_, proc, ready):
            starts.append(ready)
            time.sleep(2)
            rss.append(rss_mb(proc.pid))
    return starts, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=40, help="registrations per raw HTTP round")
    parser.add_argument("--client-per-round", type=int, default=10, help="registrations per official-client round")
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--no-clients", action="store_true", help="skip the official-client table")
    parser.add_argument("--no-startup", action="store_true", help="skip start-to-ready and idle RSS")
    parser.add_argument("--mlflow-python", default=sys.executable, help="the python of MLflow's virtualenv")
    parser.add_argument("--mlflow-workers", type=int, default=4, help="MLflow's uvicorn workers (its default: 4)")
    parser.add_argument("--mlflow-as-shipped", action="store_true",
                        help="SQLite's default journal and fsyncs and MLflow's job runner (see above)")
    parser.add_argument("--baseline-src", type=Path,
                        help="another kfbox tree's src/ (e.g. git archive <commit> src): its server is a third side "
                             "of the raw HTTP table, interleaved with the other two")
    parser.add_argument("--seed-mlflow", nargs=2, metavar=("ROOT", "VERSIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_mlflow:  # run by --mlflow-python's interpreter, below
        seed_mlflow(Path(args.seed_mlflow[0]), int(args.seed_mlflow[1]))
        return
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network here, and not what we measure

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        starts, rss = ([], []) if args.no_startup else startup(root)
        seed_kfbox(root / "kfbox", args.versions)
        (root / "mlflow").mkdir()
        ml_env = mlflow_env(root, args.mlflow_as_shipped)
        subprocess.run([args.mlflow_python, __file__, "--seed-mlflow", str(root / "mlflow"), str(args.versions)],
                       check=True, env=ml_env)
        with contextlib.ExitStack() as stack:
            kf_url, kf_proc, _ = stack.enter_context(kfbox(root / "kfbox"))
            base = stack.enter_context(kfbox(root / "baseline", args.baseline_src)) if args.baseline_src else None
            ml_url, ml_proc = stack.enter_context(mlflow_server(root / "mlflow", args.mlflow_python,
                                                                args.mlflow_workers, ml_env))
            waited = wait_idle(tree(kf_proc.pid) + tree(ml_proc.pid))
            print(f"MLflow {mlflow_version(args.mlflow_python)}: {args.mlflow_workers} workers, SQLite "
                  f"{sqlite_settings(root / 'mlflow' / 'mlflow.db')}, "
                  + ("as shipped (synchronous=FULL, job runner on)" if args.mlflow_as_shipped
                     else "synchronous=NORMAL (kfbox's), job runner off")
                  + f"; kfbox SQLite {sqlite_settings(root / 'kfbox' / 'kfbox.db')}, synchronous=NORMAL")
            procs = (workers(kf_proc.pid), workers(ml_proc.pid))
            if base is not None:
                print(f"baseline: kfbox of {args.baseline_src}")
            print(f"servers settled {waited:.1f} s after ready; process trees: kfbox {len(tree(kf_proc.pid))}, "
                  f"MLflow {len(tree(ml_proc.pid))} (request workers: {procs[0]} and {procs[1]})")
            import httpx

            with httpx.Client(base_url=kf_url, timeout=60) as kf_http, \
                    httpx.Client(base_url=ml_url, timeout=60) as ml_http, \
                    httpx.Client(base_url=base[0] if base else kf_url, timeout=60) as base_http:
                raw = [Side("kfbox", kf_proc.pid, kfbox_raw(kf_http)), Side("MLflow", ml_proc.pid, mlflow_raw(ml_http))]
                if base is not None:
                    raw.insert(1, Side("baseline", base[1].pid, kfbox_raw(base_http)))
                interleave(raw, "raw", args.rounds, args.per_round, warmup=10)
                kf_std, ml_std = StdlibHttp(kf_url), StdlibHttp(ml_url)
                stack.callback(kf_std.close)
                stack.callback(ml_std.close)
                lean = [Side("kfbox", kf_proc.pid, kfbox_raw(kf_std)),
                        Side("MLflow", ml_proc.pid, mlflow_raw(ml_std))]
                interleave(lean, "stdlib", args.rounds, args.per_round, warmup=10)
                kf_list, ml_list = list_kfbox(kf_http, args.versions), list_mlflow(ml_http, args.versions)
                lists = (Side("kfbox", kf_proc.pid, lambda _: kf_list()),
                         Side("MLflow", ml_proc.pid, lambda _: ml_list()))
                interleave(lists, "list", 3, 1, warmup=1)
            clients = None
            if not args.no_clients:
                clients = (Side("kfbox", kf_proc.pid, kfbox_client(kf_url)),
                           Side("MLflow", ml_proc.pid, mlflow_client(ml_url)))
                interleave(clients, "client", args.rounds, args.client_per_round, warmup=5)

    if starts:
        print(f"kfbox up start-to-ready: median {statistics.median(starts):.2f} s "
              f"(runs: {', '.join(f'{s:.2f}' for s in starts)})")
        print(f"kfbox idle RSS: {statistics.median(rss):.0f} MB")
    table("Registration, raw HTTP (one keep-alive httpx.Client per side)", raw,
          (procs[0], 1, procs[1]) if len(raw) == 3 else procs)
    table("Registration, raw HTTP (one keep-alive http.client.HTTPConnection per side)", lean, procs)
    if clients:
        table("Registration, official clients (model_registry.ModelRegistry vs MlflowClient)", clients, procs)
    kf_rate, ml_rate = (statistics.median(args.versions * r for r in side.rates) for side in lists)
    print(f"\nList {args.versions} versions, raw HTTP: kfbox {kf_rate:.0f}/s, MLflow {ml_rate:.0f}/s, "
          f"{kf_rate / ml_rate:.2f}x")
    print("goal: raw HTTP registration >= 5x MLflow (server CPU per registration, and rate with a client that "
          "does not dominate)")


if __name__ == "__main__":
    main()
