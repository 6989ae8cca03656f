"""From the address a server binds to, the address a client on this machine connects to, and its URL.

A server bound to a wildcard (``0.0.0.0``, ``::``, or ``''``, which ``socket.bind`` reads as
``0.0.0.0``) listens on every address of the machine, but the wildcard itself is no address to
connect to: macOS refuses a connection to ``0.0.0.0``, and a browser shown
``http://0.0.0.0:8080`` cannot open it everywhere. So every URL kfbox gives a client of this
machine (``server.json``, ``/healthz``, the dashboard's links, the task and kernel environment,
Prometheus's targets, HAProxy's way back to the server) names loopback instead, in the wildcard's
family (``::`` listens on ``::1`` for sure, on ``127.0.0.1`` only where the host is dual-stack).
An IPv6 literal is bracketed in a URL or ``host:port`` (RFC 3986).

Example::

    connect_host("0.0.0.0")           # '127.0.0.1'
    local_url("::", 8080)             # 'http://[::1]:8080'
    local_url("kfbox.lan", 8080)      # 'http://kfbox.lan:8080'
"""

from __future__ import annotations

import ipaddress

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""Bind addresses that mean every address of this machine (IPv4, IPv6, and the empty host of ``socket.bind``)."""


def is_wildcard(host: str) -> bool:
    return host in WILDCARD_HOSTS


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect_host(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``: loopback for a
    wildcard (``::1`` for ``::``), ``host`` itself otherwise."""
    if not is_wildcard(host):
        return host
    return "::1" if host == "::" else "127.0.0.1"


def bracket(host: str) -> str:
    """``host`` as it goes before ``:port`` in a URL or an address: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host else host


def local_url(host: str, port: int) -> str:
    """The ``http://`` URL a client on this machine opens for a server bound to ``host``:``port``."""
    return f"http://{bracket(connect_host(host))}:{port}"
