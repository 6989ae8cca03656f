"""The warm-child handoff (kfbox.server.warm): a real child process gets its job over the inherited
socket, answers with events, dies with the server, and its own children do not keep it looking alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kfbox.server import warm

CHILD = textwrap.dedent("""
    import os, subprocess, sys
    from kfbox.server import warm
    channel = warm.inherited_channel()
    message = channel.recv()
    if message is None:
        sys.exit(7)  # the server went away before assigning
    job = message["assign"]
    if job.get("grandchild"):
        # a process of its own that outlives this one: it must not hold the channel
        grandchild = subprocess.Popen([sys.executable, "-c", "import os, time; print(os.environ.get('KFBOX_WARM_FD')); "
                                       "time.sleep(60)"], stdout=open(job["grandchild"], "w"),
                                      start_new_session=True)
        channel.send({"event": {"grandchild": grandchild.pid}})
        sys.exit(0)
    channel.send({"event": {"echo": job["value"], "env": os.environ.get("KFBOX_WARM_FD")}})
    sys.exit(0)
""")


def _wait_for(condition, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _child(tmp_path: Path, code: str = CHILD) -> warm.WarmChild:
    return warm.spawn([sys.executable, "-c", code], log_path=tmp_path / "child.log", env=dict(os.environ))


def test_a_warm_child_gets_its_job_and_answers_with_events(tmp_path: Path) -> None:
    child = _child(tmp_path)
    try:
        assert child.assign({"value": 42})
        assert child.channel.recv() == {"event": {"echo": 42, "env": None}}  # the variable is not left behind
        assert child.channel.recv() is None  # it exited: its end closed
        assert child.popen.wait(timeout=15) == 0
        assert not child.assign({"value": 1}), "a job is handed over once"
    finally:
        child.stop(grace=0)


def test_a_warm_child_exits_when_the_server_closes_its_end(tmp_path: Path) -> None:
    child = _child(tmp_path)
    child.channel.close()
    assert child.popen.wait(timeout=15) == 7


def test_the_server_sees_a_child_exit_even_while_its_grandchild_lives(tmp_path: Path) -> None:
    child = _child(tmp_path)
    out = tmp_path / "grandchild.txt"
    grandchild = None
    try:
        child.assign({"grandchild": str(out)})
        grandchild = child.channel.recv()["event"]["grandchild"]  # type: ignore[index]
        assert child.channel.recv() is None  # end of file although the grandchild still runs
        assert _wait_for(lambda: out.read_text().strip() == "None"), "the grandchild saw the channel's variable"
        os.kill(grandchild, 0)  # still alive: the end of file came from the child's exit alone
    finally:
        child.stop(grace=0)
        if grandchild:
            os.kill(grandchild, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL of the parent: Linux runs the kernel's "
                    "parent-death signal; elsewhere the end-of-file test above covers it")
def test_a_waiting_child_dies_with_a_killed_server(tmp_path: Path) -> None:
    """The server is SIGKILLed (no cleanup runs): its warm child goes too."""
    server = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from kfbox.server import warm
        child = warm.spawn([sys.executable, "-c", "from kfbox.server.processes import die_with_parent; "
                            "die_with_parent(); "
                            "import time; time.sleep(60)"], log_path=Path({str(tmp_path / 'c.log')!r}))
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    time.sleep(0.5)  # let the child arm its signal
    proc.kill()
    proc.wait()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie waiting for init to reap it is gone too
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"

    assert _wait_for(gone), f"warm child {pid} outlived its killed server"


def test_the_fake_child_gets_the_same_messages(tmp_path: Path) -> None:
    got: list[dict[str, object]] = []

    def play(channel: warm.Channel) -> None:
        message = channel.recv()
        got.append(message or {})
        channel.send({"event": {"done": True}})

    child = warm.FakeWarmChild(play)
    events: list[dict[str, object]] = []
    ended = []
    child.events(events.append, lambda: ended.append(True))
    assert child.assign({"run_dir": "/x"})
    assert _wait_for(lambda: bool(ended))
    assert got == [{"assign": {"run_dir": "/x"}}]
    assert events == [{"done": True}]
    child.stop()


def test_a_message_can_carry_a_socket_for_one_job() -> None:
    """How the task server gets each task's own answer socket: passed with the request."""
    import socket

    ours, theirs = (warm.Channel(s) for s in socket.socketpair())
    answer_here, answer_there = socket.socketpair()
    with answer_there:
        assert ours.send_with_fd({"task": 1}, answer_there.fileno())
    received = theirs.recv_with_fd()
    assert received is not None
    message, fd = received
    assert message == {"task": 1} and fd is not None
    with socket.socket(fileno=fd) as passed:
        passed.sendall(b"pid!")
    assert answer_here.recv(4) == b"pid!"
    ours.close()
    assert theirs.recv_with_fd() is None
