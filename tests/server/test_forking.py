"""The fork-server loop (kfbox.server.forking) with real forks: a child forked on request runs in a session of its
own with its output in its log, its pid and then its exit status come back on its socket, and at the channel's end
the server SIGTERMs its children and SIGKILLs the one that ignores it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfbox.server import forking, warm

SERVER = textwrap.dedent("""
    import os, signal, sys, time
    from kfbox.server import forking, warm

    def run_child(request, conn):
        if request.get("ignore_term"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        forking.become_child(request)
        print(f"child {os.getpid()} of group {os.getpgid(0)} says {request['say']}", flush=True)
        if "exit" in request:
            os._exit(request["exit"])
        time.sleep(60)
        os._exit(0)

    sys.exit(forking.ForkServer(warm.inherited_channel(), run_child, grace=float(sys.argv[1])).serve())
""")
GRACE = 1.0
Server = tuple[warm.Channel, "subprocess.Popen[bytes]"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    channel, theirs = warm.pair()
    with theirs, (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(GRACE)],
            env=warm.child_env(theirs),
            pass_fds=(theirs.fileno(),),
            stderr=log,
        )
    yield channel, process
    channel.close()
    try:
        process.wait(GRACE + 10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _status(conn: socket.socket) -> int:
    assert forking.readable(conn, 15), "no exit status within 15 s"
    data = warm.read_exactly(conn, forking.INT.size)
    return int(forking.INT.unpack(data)[0])


def _wait_for_text(path: Path, text: str, seconds: float = 15.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_a_forked_child_runs_and_its_exit_status_comes_back(server: Server, tmp_path: Path) -> None:
    channel, _process = server
    log = tmp_path / "child.log"
    started = forking.request(channel, {"say": "hello", "exit": 7, "log": str(log)}, timeout=30)
    assert started is not None
    pid, conn = started
    with conn:
        assert _status(conn) == 7
    assert log.read_text() == f"child {pid} of group {pid} says hello\n"  # own session, output in its log


def test_the_channel_end_terminates_children_and_kills_one_that_ignores_sigterm(server: Server, tmp_path: Path) -> None:
    channel, process = server
    polite = forking.request(channel, {"say": "polite", "log": str(tmp_path / "polite.log")}, timeout=30)
    stubborn = forking.request(
        channel, {"say": "stubborn", "ignore_term": True, "log": str(tmp_path / "stubborn.log")}, timeout=30
    )
    assert polite is not None and stubborn is not None
    _wait_for_text(tmp_path / "polite.log", "says polite")
    _wait_for_text(tmp_path / "stubborn.log", "says stubborn")  # SIGTERM is ignored from here on
    began = time.monotonic()
    channel.close()
    with polite[1], stubborn[1]:
        assert _status(polite[1]) == -signal.SIGTERM
        assert _status(stubborn[1]) == -signal.SIGKILL
    assert time.monotonic() - began >= GRACE * 0.9, "SIGKILL came before the grace was over"
    assert process.wait(15) == 0
    for pid in (polite[0], stubborn[0]):  # reaped by the fork server: no process, not even a zombie, is left
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_request_after_the_server_exited_gets_no_child(server: Server) -> None:
    channel, process = server
    process.kill()
    process.wait()
    assert forking.request(channel, {"say": "late", "log": os.devnull}, timeout=5) is None
