"""The replica launcher hands a replica's arguments to its waiting standby over the warm channel
(kfbox.server.warm), and starts the next standby when asked (the manager asks once no replica is starting)."""

from __future__ import annotations

from pathlib import Path

from kfbox.serving.launcher import ReplicaLauncher
from kfbox.serving.replica import EXIT_LOAD_FAILED, FAILURE_PREFIX


def test_a_replica_starts_from_the_standby_with_its_arguments(tmp_path: Path) -> None:
    launcher = ReplicaLauncher(tmp_path / "standby")
    try:
        first = launcher.launch(["--name", "first", "--format", "sklearn", "--model-path", str(tmp_path / "none"),
                                 "--port", "1"], tmp_path / "first.log")
        assert not launcher.children(), "no standby competes with the replica being started"
        assert first.popen.wait(timeout=120) == EXIT_LOAD_FAILED  # started cold: no standby yet
        launcher.refill()
        standby = launcher.children()[0]
        launcher.refill()
        assert launcher.children() == [standby], "one standby at a time"
        # handed over at once: the message waits in the socket until the standby's imports are done
        second = launcher.launch(["--name", "second", "--format", "sklearn", "--model-path",
                                  str(tmp_path / "missing"), "--port", "1"], tmp_path / "second.log")
        assert second.pid == standby.pid, "the waiting standby became the replica"
        assert second.popen.wait(timeout=120) == EXIT_LOAD_FAILED
        log = (tmp_path / "second.log").read_text()
        assert FAILURE_PREFIX in log and "missing" in log  # its arguments arrived; its log moved with it
        assert not launcher.children()
        launcher.refill()
        assert launcher.children() and launcher.children()[0].pid != standby.pid, "a new standby waits"
    finally:
        launcher.close()
    assert not launcher.children()

