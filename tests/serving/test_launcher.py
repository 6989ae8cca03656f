"""The replica launcher forks replicas from one fork server (kfbox.serving.forkserver), which imported kserve
once: each replica is a real kserve ModelServer in its own process group with its own log, its exit status
reaches the server, it exits when the server's end of its socket closes, and a dead fork server is replaced.
Real processes throughout; the cold path (no fork server) is tested too."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfbox.server.processes import ChildProcess
from kfbox.serving.forkserver import ForkedReplica, runtime_preload
from kfbox.serving.launcher import ReplicaLauncher
from kfbox.serving.replica import EXIT_LOAD_FAILED, FAILURE_PREFIX
from tests.serving.helpers import ROWS, expected, process_title, train_iris, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def args(name: str, model: Path, port: int = 1) -> list[str]:
    return ["--name", name, "--format", "sklearn", "--model-path", str(model), "--port", str(port)]


def predicts(port: int, model: Any) -> bool:
    """The replica on ``port`` answers iris rows as ``model`` does."""
    try:
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json={"instances": ROWS})
    except httpx.TransportError:
        return False
    return reply.status_code == 200 and reply.json()["predictions"] == expected(model)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaLauncher]:
    """The module's launcher, whose fork server the tests share (each fork server imports kserve, ~2 s of CPU);
    the last test to use it kills its fork server, then closes it. Its close at the module's end reaps a replica a
    failed test left running."""
    shared = ReplicaLauncher(tmp_path_factory.mktemp("shared") / "forkserver")
    yield shared
    shared.close()


def test_a_forked_replica_serves_and_stops(tmp_path: Path, launcher: ReplicaLauncher) -> None:
    model = train_iris(tmp_path / "model")
    port = free_port()
    replica = launcher.launch(args("iris", tmp_path / "model", port), tmp_path / "iris.log")
    wait_for(lambda: predicts(port, model), 120, "the forked replica to predict")
    assert launcher.fork_server is not None and parent_of(replica.pid) == launcher.fork_server.pid
    assert os.getpgid(replica.pid) == replica.pid, "its own process group, as a spawned child's"
    assert replica.alive and replica.returncode is None
    assert replica.stop(5.0) is not None
    assert not replica.alive and not Path(f"/proc/{replica.pid}").exists()


def test_a_replica_exits_when_the_servers_end_closes(tmp_path: Path, launcher: ReplicaLauncher) -> None:
    """The server's end of the replica's socket closing is what a killed server looks like to the replica."""
    train_iris(tmp_path / "model")
    replica = launcher.launch(args("iris", tmp_path / "model", free_port()), tmp_path / "iris.log")
    assert isinstance(replica, ForkedReplica)
    pid = replica.pid
    replica._conn.close()  # the server's end only: no signal is sent
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "the replica to exit")


def test_replicas_fork_from_one_server_which_is_replaced_when_dead(tmp_path: Path, launcher: ReplicaLauncher) -> None:
    """Last with the shared launcher: kills its fork server, then closes it. Two replicas with bad models fork from
    one fork server, each exits with its load failure in its own log; a fork server that died is replaced at the
    next launch; closing the launcher stops the fork server."""
    first = launcher.launch(args("first", tmp_path / "none"), tmp_path / "first.log")
    assert isinstance(first, ForkedReplica)
    server = launcher.fork_server
    second = launcher.launch(args("second", tmp_path / "missing"), tmp_path / "second.log")
    assert server is not None and launcher.fork_server is server, "one fork server for every replica"
    for replica, missing in ((first, "none"), (second, "missing")):
        wait_for(lambda replica=replica: not replica.alive, 120, "the replica to exit")
        assert replica.returncode == EXIT_LOAD_FAILED
        log = replica.log_path.read_text()
        assert FAILURE_PREFIX in log and missing in log, log  # its own arguments, its own log
    os.kill(server.pid, signal.SIGKILL)
    wait_for(lambda: not server.alive, 10, "the fork server to die")
    third = launcher.launch(args("third", tmp_path / "absent"), tmp_path / "third.log")
    again = launcher.fork_server
    assert again is not None and again.pid != server.pid and isinstance(third, ForkedReplica)
    wait_for(lambda: not third.alive, 120, "the replica to exit")
    assert third.returncode == EXIT_LOAD_FAILED and "absent" in third.log_path.read_text()
    launcher.close()
    assert launcher.fork_server is None and not again.alive


def test_replicas_start_cold_without_the_fork_server_and_take_their_title(tmp_path: Path) -> None:
    """``warm=False`` (KFBOX_SERVING_WARM_STANDBY=0): a fresh interpreter per replica, no fork server. A cold
    replica with a bad model exits with its load failure: the next test."""
    model = train_iris(tmp_path / "model")
    launcher = ReplicaLauncher(tmp_path / "forkserver", warm=False)
    port = free_port()
    replica = launcher.launch([*args("iris", tmp_path / "model", port), "--title", "kfbox replica team-a/iris rev 3"],
                              tmp_path / "iris.log")
    try:
        assert type(replica) is not ForkedReplica and isinstance(replica, ChildProcess)
        assert launcher.fork_server is None
        wait_for(lambda: predicts(port, model), 120, "the cold replica to predict")
        assert launcher.fork_server is None
        assert process_title(replica.pid) == "kfbox replica team-a/iris rev 3"
    finally:
        replica.stop(5.0)
        launcher.close()


def test_a_fork_server_whose_imports_start_a_thread_forks_nothing(tmp_path: Path) -> None:
    """A lock held by another thread at fork() would stay held in every replica: the fork server refuses, and
    the launcher starts replicas cold from then on instead of starting another fork server each time."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import threading, time\n"
                                           "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    launcher = ReplicaLauncher(tmp_path / "forkserver")
    launcher.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), launcher.env.get("PYTHONPATH")]))
    try:
        server_log = tmp_path / "forkserver" / "forkserver.log"
        first = launcher.launch(args("first", tmp_path / "none"), tmp_path / "first.log")
        assert type(first) is not ForkedReplica, "started cold"
        assert "started threads" in server_log.read_text()
        assert launcher.fork_server is None and not launcher.warm
        assert first.popen.wait(timeout=120) == EXIT_LOAD_FAILED
        assert FAILURE_PREFIX in first.log_path.read_text()
        second = launcher.launch(args("second", tmp_path / "none"), tmp_path / "second.log")
        assert type(second) is not ForkedReplica and launcher.fork_server is None
        second.stop(5.0)  # started cold, as the first: not run to its load failure again (a kserve import)
    finally:
        launcher.close()


def test_a_replica_forks_with_its_formats_libraries_and_never_a_users_class() -> None:
    """What the fork server imports before the first fork of a kind, so the later ones inherit it: scikit-learn's
    base for sklearn, torch and transformers for huggingface and kfbox's QA model, nothing more for other formats
    (a server serving only LLMs does not import scikit-learn); a user's model class is never imported there (its
    code would be in every replica forked after it, of every service)."""
    assert runtime_preload(args("iris", Path("model"))) == ("joblib", "sklearn.base")
    hf = ["--name", "c", "--format", "huggingface", "--model-path", "m", "--port", "1"]
    assert {"torch", "transformers.modeling_utils"} <= set(runtime_preload(hf))
    assert "sklearn.base" not in runtime_preload(hf)
    qa = ["--name", "qa", "--format", "custom", "--model-class", "kfbox.serving.qa:QuestionAnswering", "--port", "1"]
    assert {"kfbox.serving.qa", "torch"} <= set(runtime_preload(qa))
    assert runtime_preload(["--name", "u", "--format", "custom", "--model-class", "mine:Model", "--port", "1"]) == ()
    assert runtime_preload(["--name", "x", "--format", "xgboost", "--model-path", "m", "--port", "1"]) == ()
    assert runtime_preload(["--no-such-flag"]) == ()


def test_a_format_whose_imports_start_a_thread_starts_cold_and_so_does_every_later_replica(tmp_path: Path) -> None:
    """A format's libraries are imported at its first fork: should they start a thread, forking from then on could
    copy a held lock into a replica, so that replica and every later one start cold; the fork server stays, with the
    replicas it forked before."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "joblib.py").write_text("import threading, time\n"  # sklearn's first import (FORMAT_PRELOAD)
                                    "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    launcher = ReplicaLauncher(tmp_path / "forkserver")
    launcher.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), launcher.env.get("PYTHONPATH")]))
    xgboost = ["--name", "x", "--format", "xgboost", "--model-path", str(tmp_path / "none"), "--port", "1"]
    try:
        first = launcher.launch(xgboost, tmp_path / "first.log")
        assert isinstance(first, ForkedReplica), "no libraries of its own: forked"
        server = launcher.fork_server
        second = launcher.launch(args("second", tmp_path / "none"), tmp_path / "second.log")
        assert type(second) is not ForkedReplica, "its format's import started a thread: started cold"
        assert "forking no more" in (tmp_path / "forkserver" / "forkserver.log").read_text()
        third = launcher.launch([*xgboost[:1], "third", *xgboost[2:]], tmp_path / "third.log")
        assert type(third) is not ForkedReplica and launcher.fork_server is server and server is not None
        assert server.alive
        for replica in (first, second, third):
            wait_for(lambda replica=replica: not replica.alive, 120, "the replica to exit")
            assert replica.returncode == EXIT_LOAD_FAILED and "none" in replica.log_path.read_text()
    finally:
        launcher.close()
