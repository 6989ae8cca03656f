"""Connection hand-off (``kfbox up --data-plane handoff``): what both sides agree on.

With this data plane kfbox's port does not proxy a model's requests: it reads a new connection's first
request head, and when kfbox would send that request straight to a replica without a question asked,
it passes the connection itself (the socket, ``SCM_RIGHTS``) and the bytes read so far to one of the
service's ready replicas (:mod:`kfbox.serving.handoff_server`). The replica answers that connection's
requests from then on (:mod:`kfbox.serving.handoff_replica`): no hop, so a client gets the replica's own
latency. It is how a Kubernetes Service balances (per connection), not per request.

A request is sent straight only when it is plainly one for that replica, by the rules of the HAProxy data
plane (:mod:`kfbox.serving.haproxy_config`): HTTP/1.1; GET, HEAD, POST, PUT, DELETE, OPTIONS or PATCH (not
``CONNECT``); a path with no dot segment, ``//``, ``%`` or ``\\``; no ``Origin``, ``Upgrade``,
``Transfer-Encoding``, ``Expect`` or ``Cookie``; a ``Content-Length`` within ``serving_max_body_bytes``; each of
``Host``, ``Authorization`` and ``Content-Length`` at most once; with a token, ``Authorization`` exactly ``Bearer
<token>``; lines end in CRLF only, so the replica's parser and this one agree on where each request ends.
Anything else goes to kfbox's full stack, which answers it as it always does: the first request, by not handing
the connection off; a later one, by the replica handing the connection back with that request's bytes, before it
reads any of them.

Messages on a replica's hand-off socket (``SOCK_SEQPACKET``: one message, one datagram, its descriptor
attached): ``{json}\\n<bytes>``, the JSON says what it is and the bytes are the client's, unread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import socket
from typing import Any

MAX_HEAD_BYTES = 16 * 1024
"""A request head longer than this is not sent straight (kfbox's stack answers it)."""
MAX_MESSAGE_BYTES = 128 * 1024
"""The largest message on a hand-off socket: a head and the start of its body."""


@dataclasses.dataclass(frozen=True, slots=True)
class Head:
    """What the hand-off decides on, from a request head's raw bytes."""

    size: int
    """Bytes up to and including the blank line."""
    method: bytes
    target: bytes
    host: bytes | None
    authorization: bytes | None
    content_length: int

    def without_prefix(self, data: bytes, prefix: bytes) -> bytes:
        """The head at the start of ``data`` with ``prefix`` taken off its target (the path the replica serves),
        and the rest of ``data`` after it."""
        start = len(self.method) + 1
        return data[:start] + data[start + len(prefix):]


REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) (/[^ \x00-\x20\x7f]*) HTTP/1\.1\r\n")
"""Methods whose request llhttp frames by ``Content-Length`` alone: not ``CONNECT``, whose head it takes as a tunnel's
and whose body it would then parse as a request of its own, unchecked (request smuggling)."""
HEADER_LINES = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*\r\n)*")
"""Header lines as RFC 9110 writes them: a token, a colon, a value; CRLF only, so the replica's parser and this one
agree on where each request ends (a bare CR or LF, an obs-fold, a space before the colon: not plain)."""
UNUSUAL_PATH_MARK = re.compile(rb"/\.|//|%|\\")
UNUSUAL_HEADER = re.compile(rb"(?:^|\n)(?:origin|upgrade|transfer-encoding|expect|cookie|proxy-authorization):")
ONCE_HEADER = re.compile(rb"(?:^|\n)(host|authorization|content-length):")


def read_head(data: bytes) -> Head | None:
    """The head at the start of ``data`` when it is plain (module docstring), else None: incomplete, unusual,
    malformed or too long. Regular expressions over the whole head, not a loop over its lines: it runs before every
    request a replica answers on a handed connection."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        return None
    line = REQUEST_LINE.match(data, 0, end + 2)
    if line is None:
        return None
    block = data[line.end():end + 2]
    target = line.group(2)
    if not HEADER_LINES.fullmatch(block) or UNUSUAL_PATH_MARK.search(target.split(b"?", 1)[0]):
        return None
    lowered = block.lower()
    if UNUSUAL_HEADER.search(lowered):
        return None
    seen: dict[bytes, bytes] = {}
    for found in ONCE_HEADER.finditer(lowered):
        name = found.group(1)
        if name in seen:
            return None
        seen[name] = block[found.end():block.index(b"\r\n", found.end())].strip(b" \t")
    length = seen.get(b"content-length", b"0")
    if not length.isdigit():
        return None
    return Head(end + 4, line.group(1), target, seen.get(b"host"), seen.get(b"authorization"), int(length))


def digest(authorization: bytes) -> str:
    """What a replica compares ``Authorization`` with: it is never given the token itself."""
    return hashlib.sha256(authorization).hexdigest()


@dataclasses.dataclass(frozen=True)
class Grant:
    """What a replica may answer on a connection handed to it: requests with this ``Host``, under this path
    prefix (removed before its app sees the path; empty when the ``Host`` names the service), carrying this
    ``Authorization`` (its digest; None without a token) and a body of at most ``max_body`` bytes; the server's
    read deadlines (seconds, 0: none) and overload bound (requests read and not yet answered on the replica's
    handed connections; 0: none), which the replica keeps for it, as it does the cap per client address; ``service``
    is ``namespace/name``."""

    host: bytes | None
    prefix: bytes
    authorization: str | None
    max_body: int
    revision: str
    header_timeout: float = 0.0
    body_timeout: float = 0.0
    queue: int = 0
    service: str = ""
    per_client: int = 0
    """Handed connections one client address may hold on the replica (``max_connections_per_client``; 0: no cap):
    the server no longer counts a connection once it is handed."""

    def allows(self, head: Head) -> bool:
        if head.host != self.host or head.content_length > self.max_body:
            return False
        if self.prefix and not (head.target.startswith(self.prefix) and head.target[len(self.prefix):][:1] == b"/"):
            return False
        if self.authorization is not None:
            return head.authorization is not None and digest(head.authorization) == self.authorization
        return True

    def to_json(self) -> dict[str, Any]:
        return {"host": None if self.host is None else self.host.decode("latin-1"),
                "prefix": self.prefix.decode("latin-1"), "authorization": self.authorization,
                "max_body": self.max_body, "revision": self.revision, "header_timeout": self.header_timeout,
                "body_timeout": self.body_timeout, "queue": self.queue, "service": self.service,
                "per_client": self.per_client}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        host = data["host"]
        return cls(None if host is None else host.encode("latin-1"), data["prefix"].encode("latin-1"),
                   data["authorization"], int(data["max_body"]), str(data["revision"]),
                   float(data.get("header_timeout", 0)), float(data.get("body_timeout", 0)),
                   int(data.get("queue", 0)), str(data.get("service", "")), int(data.get("per_client", 0)))


def pack(message: dict[str, Any], data: bytes = b"") -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n" + data


def unpack(payload: bytes) -> tuple[dict[str, Any], bytes] | None:
    line, newline, data = payload.partition(b"\n")
    if not newline:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return (message, data) if isinstance(message, dict) else None


def send(sock: socket.socket, message: dict[str, Any], data: bytes = b"", fd: int | None = None) -> bool:
    """One message, without blocking: False when the socket's buffer is full, the other side is gone or the message
    is longer than :data:`MAX_MESSAGE_BYTES`."""
    payload = pack(message, data)
    if len(payload) > MAX_MESSAGE_BYTES:  # the other side would read it cut short: the client's bytes lost
        return False
    try:
        if fd is None:
            sock.send(payload, socket.MSG_DONTWAIT)
        else:
            socket.send_fds(sock, [payload], [fd], socket.MSG_DONTWAIT)
    except OSError:
        return False
    return True


Received = tuple[dict[str, Any], bytes, int | None]
"""A message, the client's bytes it carried and the descriptor attached to it."""


def receive(sock: socket.socket) -> Received | None:
    """The next message, without blocking; None when none is waiting. Raises :class:`EOFError` once the other side
    is gone. A malformed or cut short message reads as an empty one (its descriptor closed)."""
    try:
        payload, fds, flags, _address = socket.recv_fds(sock, MAX_MESSAGE_BYTES, 1, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise EOFError(str(exc)) from exc
    unpacked = unpack(payload) if payload and not flags & socket.MSG_TRUNC else None
    if unpacked is None:
        for fd in fds:
            os.close(fd)
        if not payload:
            raise EOFError("the other side closed its hand-off socket")
        return {}, b"", None
    return unpacked[0], unpacked[1], (fds[0] if fds else None)
