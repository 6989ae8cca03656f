"""Raw HTTP/1.1 over a socket: the bytes an attacker sends, with no client normalising the path."""

from __future__ import annotations

import dataclasses
import json
import socket
from typing import Any


@dataclasses.dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, method: str, target: str, headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 30.0) -> RawReply:
    """Send ``METHOD target HTTP/1.1`` exactly as given (``..`` and ``%2e`` untouched), read to close."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in
                                               {"Host": f"127.0.0.1:{port}", **(headers or {})}.items()),
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, content = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return RawReply(status=int(status_line.split()[1]), headers=parsed, body=content)
