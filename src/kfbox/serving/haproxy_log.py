"""HAProxy's per-request log lines, counted as kfbox's own serving metrics.

Each request HAProxy routes straight to a replica logs one line (``h:<namespace>/<name> <status>
<milliseconds>``, the format :mod:`kfbox.serving.haproxy_config` sets) into a ring buffer in HAProxy's
memory, which HAProxy forwards over a unix *stream* socket kfbox listens on (one connection per worker, a
reload's new worker opens its own). Each line is counted under ``kfbox_serving_requests_total`` and
``kfbox_serving_request_duration_seconds`` as a request through kfbox's own gateway is (HAProxy's time
is in whole milliseconds).

Why a stream and not datagrams: a unix datagram socket queues ``net.unix.max_dgram_qlen`` datagrams, 10 on
a stock Linux, and HAProxy drops the rest. Read in batches, 6 of 7 requests at 1,500/s went uncounted. A
stream queues bytes (the socket's buffer, then HAProxy's ring), enough for seconds of lines.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from pathlib import Path

from kfbox.serving.gateway import Series
from kfbox.serving.manager import ServingManager

BATCH_SECONDS = 0.05
"""A connection is drained this often under load: a wake-up per routed request cost the server 20-90 us
each, most of the hop's CPU left in kfbox. The lines wait in the socket's buffer and HAProxy's ring
(:data:`kfbox.serving.haproxy_config.LOG_RING_BYTES`) meanwhile."""
READ_BYTES = 1 << 16
READS_PER_DRAIN = 16
"""At most 1 MiB (~40,000 lines) a drain; the rest waits for the next one, the loop serves requests between."""


class RequestLog:
    def __init__(self, manager: ServingManager) -> None:
        self.manager = manager
        self.series: dict[tuple[str, str], Series] = {}
        self._listener: socket.socket | None = None
        self._partial: dict[socket.socket, bytes] = {}
        """Each open connection, with the start of a line whose end has not arrived yet."""

    def listen(self, path: Path) -> None:
        """Bind the socket HAProxy forwards its log to (0600) and accept its connections on the running loop."""
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        path.chmod(0o600)
        listener.listen(8)
        listener.setblocking(False)
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    def close(self) -> None:
        for sock in [*self._partial, *([self._listener] if self._listener is not None else [])]:
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        self._partial.clear()
        self._listener = None

    def _accept(self) -> None:
        if self._listener is None:
            return
        try:
            connection, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        connection.setblocking(False)
        self._partial[connection] = b""
        asyncio.get_running_loop().add_reader(connection.fileno(), self._wake, connection)

    def _wake(self, connection: socket.socket) -> None:
        """Wakes on the first bytes, then drains the connection once per :data:`BATCH_SECONDS`."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(connection.fileno())
        loop.call_later(BATCH_SECONDS, self._drain, connection)

    def _drain(self, connection: socket.socket) -> None:
        if connection not in self._partial:  # closed meanwhile
            return
        chunks = [self._partial[connection]]
        ended = False
        for _ in range(READS_PER_DRAIN):  # bounded: a flood of lines must not hold the server's loop
            try:
                data = connection.recv(READ_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:  # the worker exited (a reload's old one, a restart)
                ended = True
                break
            chunks.append(data)
        *lines, rest = b"".join(chunks).split(b"\n")
        for line, times in collections.Counter(lines).items():  # a batch's lines repeat: parse each once
            self.count(line, times)
        if ended:
            del self._partial[connection]
            connection.close()
            return
        self._partial[connection] = rest
        asyncio.get_running_loop().add_reader(connection.fileno(), self._wake, connection)

    def count(self, line: bytes, times: int = 1) -> None:
        """A routed request's log line, ``h:<namespace>/<name> <status> <milliseconds>``, seen ``times``."""
        try:
            where, status, millis = line.split()
            namespace, name = where[2:].decode().split("/", 1)
            code, seconds = int(status), int(millis) / 1000
        except ValueError:
            return
        deployment = self.manager.deployments.get((namespace, name))
        if deployment is None:
            return
        series = Series.of(self.series, self.manager.metrics, deployment)
        series.requests(code).inc(times)
        for _ in range(times):
            series.latency.observe(seconds)
