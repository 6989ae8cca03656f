"""Which ``Host`` names the server answers to: the DNS-rebinding defence.

A page on ``http://evil.example`` whose name the attacker re-points at 127.0.0.1 reaches the
server with ``Host: evil.example``; answering only names the server is known by stops it.
IP literals are always accepted: rebinding needs a name the attacker controls.

Example::

    hosts = HostAllowlist.from_settings(settings)
    hosts.allows(b"127.0.0.1:8080")      # True
    hosts.allows(b"evil.example")        # False
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

from kfbox.addresses import bracket, is_loopback, is_wildcard
from kfbox.config import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "localhost.localdomain",
                  # how container components reach the host (Docker, Podman): names no attacker's DNS serves
                  "host.docker.internal", "host.containers.internal")
SEEN_LIMIT = 1024


class HostAllowlist:
    """Exact names and ``.suffix`` domains, precomputed; checks take a raw ``Host`` header value."""

    def __init__(self, names: set[str], suffixes: tuple[str, ...], port: int) -> None:
        self.names = frozenset(n.lower() for n in names)
        self.suffixes = tuple(s.lower() for s in suffixes)
        # the common case: a header exactly as a client of this server writes it, answered by one lookup
        self.exact = frozenset({f"{bracket(n)}:{port}".encode() for n in self.names}
                               | {bracket(n).encode() for n in self.names})
        self.seen: set[bytes] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> HostAllowlist:
        names = set(LOOPBACK_NAMES)
        suffixes = ["." + settings.ingress_domain.lower().strip(".")]
        if not is_wildcard(settings.host):
            names.add(settings.host)
        if not is_loopback(settings.host):
            names.add(socket.gethostname())  # the machine's own name, as users on the LAN type it
        for entry in settings.allowed_hosts.split(","):
            entry = entry.strip().lower()
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            elif entry:
                names.add(entry)
        return cls(names, tuple(suffixes), settings.port)

    def allows(self, host: bytes | None) -> bool:
        if host is None or host in self.exact or host in self.seen:
            return True  # no Host (HTTP/1.0, not a browser) cannot be a rebinding
        name = _hostname(host.decode("latin-1").lower())
        allowed = name in self.names or name.endswith(self.suffixes) or _is_ip(name)
        if allowed and len(self.seen) < SEEN_LIMIT:
            self.seen.add(host)  # gateway Host values repeat: one set lookup next time
        return allowed


def _hostname(host: str) -> str:
    """``[::1]:8080`` -> ``::1``; ``name:8080`` -> ``name``; a trailing dot is the same name."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".")


@lru_cache(maxsize=256)
def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
