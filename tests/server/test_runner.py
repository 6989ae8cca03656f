"""The settings a server runs with once its port is bound."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from kfbox.config import Settings
from kfbox.server.runner import bound
from kfbox.serving.haproxy import ingress_port


def test_a_free_server_port_gives_haproxy_a_free_port_not_the_next_one(tmp_path: Path) -> None:
    """``kfbox up --port 0 --data-plane haproxy``: the port after the one picked may be anyone's."""
    with socket.socket() as server, socket.socket() as next_one:
        server.bind(("127.0.0.1", 0))
        picked = server.getsockname()[1]
        with contextlib.suppress(OSError):  # taken by someone else (if already taken: as good)
            next_one.bind(("127.0.0.1", picked + 1))
        settings = bound(Settings.load(home=tmp_path, port=0, data_plane="haproxy"), picked)
        assert settings.port == picked
        ingress = ingress_port(settings)
        assert ingress != picked + 1
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", ingress))  # free


def test_a_chosen_server_port_keeps_the_next_one_for_haproxy(tmp_path: Path) -> None:
    settings = bound(Settings.load(home=tmp_path, port=8080, data_plane="haproxy"), 8080)
    assert ingress_port(settings) == 8081
    chosen = bound(Settings.load(home=tmp_path, port=0, ingress_port=9001, data_plane="haproxy"), 40000)
    assert ingress_port(chosen) == 9001
