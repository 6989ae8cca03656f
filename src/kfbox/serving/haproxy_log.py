"""HAProxy's per-request log datagrams, counted as kfbox's own serving metrics.

Each request HAProxy routes straight to a replica sends one line (``h:<namespace>/<name> <status>
<milliseconds>``, the format :mod:`kfbox.serving.haproxy_config` sets) to a unix datagram socket kfbox
reads, and is counted under ``kfbox_serving_requests_total`` and
``kfbox_serving_request_duration_seconds`` as a request through kfbox's own gateway is (HAProxy's time
is in whole milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from kfbox.serving.gateway import Series
from kfbox.serving.manager import ServingManager

BATCH_SECONDS = 0.05
"""The socket is drained this often under load: HAProxy's datagrams wait in the kernel (512 of them by
default, ``net.unix.max_dgram_qlen``, so 10,000 requests/s before one is dropped)."""


class RequestLog:
    def __init__(self, manager: ServingManager) -> None:
        self.manager = manager
        self.series: dict[tuple[str, str], Series] = {}
        self._socket: socket.socket | None = None

    def listen(self, path: Path) -> None:
        """Bind the socket HAProxy logs to (0600) and read it on the running loop."""
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        path.chmod(0o600)
        sock.setblocking(False)
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._wake)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None

    def _wake(self) -> None:
        """Wakes on the first datagram, then drains the socket once per :data:`BATCH_SECONDS`: a wake-up per
        routed request cost the server 20-90 us each, most of the hop's CPU left in kfbox."""
        sock = self._socket
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        loop.call_later(BATCH_SECONDS, self._drain, sock)

    def _drain(self, sock: socket.socket) -> None:
        if sock is not self._socket:  # closed meanwhile
            return
        while True:
            try:
                self.count(sock.recv(2048))
            except (BlockingIOError, InterruptedError):
                break
        asyncio.get_running_loop().add_reader(sock.fileno(), self._wake)

    def count(self, line: bytes) -> None:
        """One routed request's log line: ``h:<namespace>/<name> <status> <milliseconds>``."""
        try:
            where, status, millis = line.split()
            namespace, name = where[2:].decode().split("/", 1)
            code, seconds = int(status), int(millis) / 1000
        except ValueError:
            return
        deployment = self.manager.deployments.get((namespace, name))
        if deployment is None:
            return
        series = self.series.get(deployment.key)
        if series is None or series.deployment is not deployment:
            series = self.series[deployment.key] = Series(self.manager.metrics, deployment)
        series.requests(code).inc()
        series.latency.observe(seconds)
