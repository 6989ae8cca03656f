"""``kfbox up --prometheus`` in the foreground when Prometheus cannot start: the server runs on and says why on
stderr, once; Ctrl-C stops it cleanly (a real ``kfbox up`` process and Debian's real binary)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import lean_env, loopback


def _running_with(text: str) -> list[str]:
    """Command lines of the live processes that mention ``text`` (a Prometheus left behind names its home)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # not a process, or gone meanwhile
            continue
        if text in argv:
            found.append(argv)
    return found


def test_foreground_up_says_why_prometheus_is_not_up_and_serves_on(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("prometheus is not installed: sudo apt-get install prometheus")
    home, out, err = tmp_path / "home", tmp_path / "stdout", tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")} | lean_env()
    # a real process, not a fork from tests/zygote.py: stdout and stderr apart, SIGINT as a terminal's Ctrl-C sends it
    argv = [sys.executable, "-m", "kfbox", "up", "--prometheus", "--port", "0", "--home", str(home)]
    with socket.socket() as taken:  # Prometheus's configured port is busy: it exits at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env["KFBOX_PROMETHEUS_PORT"] = str(port)
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            server = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
                                      start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while "Error:" not in err.read_text():
                assert server.poll() is None, f"kfbox up exited {server.returncode}:\n{err.read_text()}"
                assert time.monotonic() < deadline, f"no Error: line in 30 s:\n{out.read_text()}\n{err.read_text()}"
                time.sleep(0.1)
            url = json.loads((home / "server.json").read_text())["url"]
            assert f"kfbox starting on {url} (home {home})" in out.read_text()  # --port 0: the port picked
            assert loopback().get(f"{url}/healthz").status_code == 200  # the server runs on without Prometheus
            server.send_signal(signal.SIGINT)
            code = server.wait(20)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    log = home / "logs" / "prometheus.log"
    errors = [line for line in err.read_text().splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: Prometheus exited while starting (exit code 1): listen tcp 127.0.0.1:{port}: bind: "
                      f"address already in use. Its log: {log}"]  # the reason, from its log's last error line
    assert "Traceback" not in err.read_text(), err.read_text()
    assert "Prometheus is" not in out.read_text()  # no ready line as well
    assert code == 130  # the shell's code for Ctrl-C, as every kfbox command exits on it (kfbox.cli.main)
    assert not (home / "server.json").exists()  # a clean stop removes its record
    assert _running_with(str(home)) == []
