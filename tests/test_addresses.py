"""One way from a bind address to the address and URL a client on this machine uses (kfbox.addresses)."""

from __future__ import annotations

import socket

import pytest

from kfbox.addresses import bracket, connect_host, local_url
from kfbox.config import Settings


@pytest.mark.parametrize(("bind", "url"), [
    ("0.0.0.0", "http://127.0.0.1:8080"),
    ("::", "http://[::1]:8080"),
    ("", "http://127.0.0.1:8080"),  # socket.bind's empty host: every IPv4 address
    ("127.0.0.1", "http://127.0.0.1:8080"),
    ("::1", "http://[::1]:8080"),
    ("kfbox.lan", "http://kfbox.lan:8080"),
    ("localhost", "http://localhost:8080"),
    ("192.168.1.5", "http://192.168.1.5:8080"),
    ("fd00::5", "http://[fd00::5]:8080"),
])
def test_a_wildcard_is_reached_on_loopback_any_other_host_as_it_is(bind: str, url: str) -> None:
    assert local_url(bind, 8080) == url
    assert Settings(host=bind, port=8080, token="t").url == url


@pytest.mark.parametrize(("family", "bind"), [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")])
def test_the_connect_host_of_a_wildcard_reaches_a_socket_bound_to_it(family: socket.AddressFamily, bind: str) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((bind, 0))
        server.listen()
        with socket.create_connection((connect_host(bind), server.getsockname()[1]), timeout=5):
            pass  # connected: the address answers


def test_only_ipv6_literals_are_bracketed() -> None:
    assert [bracket(h) for h in ("::1", "127.0.0.1", "kfbox.lan")] == ["[::1]", "127.0.0.1", "kfbox.lan"]
