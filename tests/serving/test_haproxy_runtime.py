"""HAProxy's runtime API as the data plane drives it: the pure planning (slots, commands), then the commands
against the real haproxy binary, in front of plain HTTP servers standing in for replicas and for kfbox: a
replica replaced with no new worker and no client connection lost, a service with no usable slot handed
to kfbox, and a reload that keeps an idle keep-alive connection for its next request."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import os
import shutil
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfbox.serving.haproxy_config import Plan, Route, Server, render, split_text
from kfbox.serving.haproxy_runtime import (
    SLOTS_MIN,
    MasterSocket,
    assign,
    layout,
    map_commands,
    map_text,
    place,
    revisions,
    server_commands,
    slot_count,
    split_commands,
    stat_rows,
    worker_pids,
)
from tests.serving.helpers import NamedServer, connects, haproxy, haproxy_workers, wait_for

A1 = Server("iris-predictor-00001", 1, 40001)
A2 = Server("iris-predictor-00001", 2, 40002)
B1 = Server("iris-predictor-00002", 1, 40003)


def route(*slots: Server | None, split: bool = False) -> Route:
    return Route("default", "iris", tuple(slots), split=split)


def plan_of(*routes: Route, revision_map: str = "/tmp/revisions.map") -> Plan:
    return Plan(bind_host="127.0.0.1", port=18081, kfbox_host="127.0.0.1", kfbox_port=18080, domain="example.com",
                max_body_bytes=1 << 20, log_socket="/tmp/log.sock", token_file=None, routes=routes,
                revision_map=revision_map)


# --- planning ------------------------------------------------------------------------------
def test_a_replica_keeps_its_slot_and_a_new_one_takes_the_first_free() -> None:
    assert assign((A1, None, None), [A1, A2], busy=set(), size=3) == (A1, A2, None)
    heavier = dataclasses.replace(A1, weight=4)
    assert assign((None, A1, None), [heavier], busy=set(), size=3) == (None, heavier, None)
    assert assign((), [A1], busy=set(), size=2) == (A1, None)  # a new backend


def test_an_emptied_or_busy_slot_is_not_refilled() -> None:
    """A new revision replacing the old one: the old replica's slot may still hold its requests, so the new
    replica takes another; a slot kfbox marks busy (its replica still drains) too."""
    assert assign((A1, None, None), [B1], busy=set(), size=3) == (None, B1, None)
    assert assign((None, None, None), [B1], busy={0, 1}, size=3) == (None, None, B1)
    assert assign((A1, None), [B1], busy={1}, size=2) is None  # no free slot: more slots, a reload
    assert assign((A1, None), [B1], busy={1}, size=4) == (None, None, B1, None)


def test_place_makes_room_by_doubling_even_from_no_slots() -> None:
    assert place((), [A1], busy=set(), size=0) == (A1,)
    assert place((A1,), [A1, A2], busy=set(), size=1) == (A1, A2)


def test_slot_count_covers_a_rollout_within_bounds() -> None:
    assert [slot_count(n) for n in (1, 4, 5, 1000)] == [SLOTS_MIN, SLOTS_MIN, 10, 64]


def test_only_the_layout_takes_a_reload() -> None:
    one, other = plan_of(route(A1, None)), plan_of(route(None, B1))
    assert layout(one) == layout(other)  # replicas and weights: the runtime API
    assert layout(one) != layout(plan_of(route(A1, None, None)))  # more slots
    assert layout(one) == layout(plan_of(route(A1, None, split=True)))  # the split turned on: a map entry
    assert layout(one) != layout(plan_of(route(A1, None), Route("default", "other", (None,))))  # a new service


def test_server_commands_make_the_new_replica_ready_before_the_old_goes() -> None:
    """The same slots in both of the service's backends (least connections, round robin)."""
    lc, rr = "svc_default_iris", "split_default_iris"
    assert server_commands(plan_of(route(A1, None)), plan_of(route(None, B1))) == [
        f"set server {lc}/s2 addr 127.0.0.1 port 40003", f"set weight {lc}/s2 1", f"set maxconn server {lc}/s2 64",
        f"set server {lc}/s2 state ready",
        f"set server {rr}/s2 addr 127.0.0.1 port 40003", f"set weight {rr}/s2 1", f"set maxconn server {rr}/s2 64",
        f"set server {rr}/s2 state ready",
        f"set server {lc}/s1 state maint", f"set server {rr}/s1 state maint"]
    limited = dataclasses.replace(B1, maxconn=1)  # containerConcurrency 1: the slot is limited before it is used
    assert f"set maxconn server {lc}/s2 1" in server_commands(plan_of(route(A1, None)), plan_of(route(A1, limited)))
    reweighted = plan_of(route(A1, dataclasses.replace(B1, weight=4)))
    assert server_commands(plan_of(route(A1, B1)), reweighted) == [f"set weight {lc}/s2 4", f"set weight {rr}/s2 4"]
    assert server_commands(reweighted, reweighted) == []
    assert server_commands(None, plan_of(route(A1, None))) == [  # unknown state: every slot, readdressed in maint
        f"set server {lc}/s1 state maint", f"set server {lc}/s1 addr 127.0.0.1 port 40001", f"set weight {lc}/s1 1",
        f"set maxconn server {lc}/s1 64", f"set server {lc}/s1 state ready",
        f"set server {rr}/s1 state maint", f"set server {rr}/s1 addr 127.0.0.1 port 40001", f"set weight {rr}/s1 1",
        f"set maxconn server {rr}/s1 64", f"set server {rr}/s1 state ready", f"set server {lc}/s2 state maint",
        f"set server {rr}/s2 state maint"]


def test_split_commands_send_a_split_to_round_robin_last_and_back_first() -> None:
    """On: the map entry after the weights (sent between the two lists); off: before them."""
    plain, split = plan_of(route(A1, B1)), plan_of(route(A1, B1, split=True))
    assert split_commands("/s", plain, split) == ([], ["add map /s default/iris 1"])
    assert split_commands("/s", split, plain) == (["del map /s default/iris"], [])
    assert split_commands("/s", split, split) == ([], [])
    assert split_commands("/s", None, split) == (["del map /s default/iris"], ["add map /s default/iris 1"])
    assert split_commands("/s", None, plain) == (["del map /s default/iris"], [])


def test_map_commands_follow_the_ports() -> None:
    assert revisions(plan_of(route(None, B1)), {40001: "iris-predictor-00001"}) == {
        40001: "iris-predictor-00001", 40003: "iris-predictor-00002"}  # a draining replica keeps its entry
    assert map_commands("/m", {40001: "r1"}, {40001: "r1", 40003: "r2"}) == ["add map /m 40003 r2"]
    assert map_commands("/m", {40001: "r1", 40003: "r2"}, {40003: "r2"}) == ["del map /m 40001"]
    assert map_commands("/m", None, {40003: "r2"}) == ["del map /m 40003", "add map /m 40003 r2"]
    assert map_text({40003: "r2", 40001: "r1"}) == "40001 r1\n40003 r2\n"


def test_show_proc_and_show_stat_are_read() -> None:
    proc = ("#<PID>          <type>          <reloads>       <uptime>        <version>\n"
            "8830            master          1 [failed: 0]   0d00h00m12s     2.6.12-1+deb12u4\n"
            "# workers\n9254            worker          0               0d00h00m01s     2.6.12-1+deb12u4\n"
            "# old workers\n8833            worker          1               0d00h00m12s     2.6.12-1+deb12u4\n"
            "# programs\n")
    assert worker_pids(proc) == (9254, [9254, 8833])
    assert worker_pids("#<PID> <type>\n# workers\n") == (None, [])
    fields = ["be", "s2", "1", "0", "3", "0", "", "17", *[""] * 9, "MAINT", *[""] * 55, "127.0.0.1:40003"]
    (row,) = stat_rows("# pxname,svname,...\n" + ",".join(fields) + "\nUnknown command.\n")
    assert (row.backend, row.server, row.inflight, row.total, row.port, row.status) == \
        ("be", "s2", 4, 17, 40003, "MAINT")


# --- against haproxy -----------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def haproxy_installed() -> None:
    if shutil.which("haproxy") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")


@dataclasses.dataclass
class Running:
    home: Path
    port: int
    plan: Plan
    master: subprocess.Popen[bytes]

    def apply(self, plan: Plan, draining: dict[int, str] | None = None) -> list[str] | None:
        """What the data plane sends for a change from :attr:`plan` (``HaproxyDataPlane._apply``)."""
        off, on = split_commands(plan.split_map, self.plan, plan)
        commands = map_commands(plan.revision_map, revisions(self.plan, {}), revisions(plan, draining or {})) + \
            off + server_commands(self.plan, plan) + on
        self.plan = plan
        return asyncio.run(MasterSocket(self.home / "haproxy" / "master.sock").run("@1", commands))

    def get(self, connection: http.client.HTTPConnection, path: str) -> tuple[str, str | None, str | None]:
        connection.request("GET", path)
        reply = connection.getresponse()
        return reply.read().decode(), reply.getheader("x-kfbox-revision"), reply.getheader("connection")


@pytest.fixture()
def running(tmp_path: Path) -> Iterator[Running]:
    """HAProxy with kfbox's configuration for one service, ``iris``, its replica A1 in the first of 4 slots."""
    kfbox = NamedServer("kfbox")
    folder = tmp_path / "haproxy"
    folder.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    a1 = NamedServer("a1")
    plan = dataclasses.replace(plan_of(route(dataclasses.replace(A1, port=a1.port), None, None, None),
                                       revision_map=str(folder / "revisions.map")),
                               port=port, kfbox_port=kfbox.port, log_socket=str(folder / "log.sock"),
                               split_map=str(folder / "split.map"))
    (folder / "revisions.map").write_text(map_text(revisions(plan, {})))
    (folder / "split.map").write_text(split_text(plan))
    config = folder / "haproxy.cfg"
    config.write_text(render(plan))
    master = subprocess.Popen(["haproxy", "-W", "-S", f"{folder / 'master.sock'},mode,600", "-f", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: connects(port) and haproxy_workers(tmp_path)[0], 10, "HAProxy listening")
        yield Running(tmp_path, port, plan, master)
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        master.wait(10)
        kfbox.server.shutdown()
        a1.server.shutdown()


def test_a_replica_replaced_at_run_time_keeps_the_worker_and_the_connection(running: Running) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    path = "/serving/default/iris/v1/models/iris"
    assert running.get(connection, path) == ("a1 /v1/models/iris", "iris-predictor-00001", None)
    workers = haproxy_workers(running.home)
    b1 = NamedServer("b1")
    replaced = dataclasses.replace(running.plan, routes=(route(None, dataclasses.replace(B1, port=b1.port), None,
                                                               None),))
    assert running.apply(replaced, draining={running.plan.routes[0].servers[0].port: A1.revision}) == []
    assert running.get(connection, path) == ("b1 /v1/models/iris", "iris-predictor-00002", None)  # same connection
    assert haproxy_workers(running.home) == workers  # no new worker
    stats = {row.server: row for row in stat_rows(haproxy(running.home, "@1 show stat -1 4 -1"))}
    assert (stats["s1"].status, stats["s2"].status, stats["s2"].port) == ("MAINT", "no check", b1.port)
    # no usable slot (scaled to zero): kfbox's gateway gets the request, its path as the client sent it
    assert running.apply(dataclasses.replace(running.plan, routes=(route(None, None, None, None),))) == []
    assert running.get(connection, path) == (f"kfbox {path}", None, None)


def test_a_split_turned_on_and_off_at_run_time_keeps_the_worker(running: Running) -> None:
    """Two replicas weighted 4:1, ten requests one after the other: split, the service's requests go to its round
    robin backend (8 and 2: the split exactly); unsplit, to least connections, which among idle servers ignores
    the weights (5 and 5). Both at run time: the same worker throughout."""
    b1 = NamedServer("b1")
    a, b = dataclasses.replace(A1, port=running.plan.routes[0].servers[0].port, weight=4), \
        dataclasses.replace(B1, port=b1.port, weight=1)
    workers = haproxy_workers(running.home)

    def shares() -> Counter[str]:
        return Counter(running.get(http.client.HTTPConnection("127.0.0.1", running.port, timeout=10),
                                   "/serving/default/iris/v1/models/iris")[0].split()[0] for _ in range(10))

    for split, want in ((False, {"a1": 5, "b1": 5}), (True, {"a1": 8, "b1": 2}), (False, {"a1": 5, "b1": 5})):
        assert running.apply(dataclasses.replace(running.plan, routes=(route(a, b, None, None, split=split),))) == []
        assert shares() == want, split
    assert haproxy_workers(running.home) == workers
    b1.server.shutdown()


def test_a_change_sent_again_in_full_reports_no_problem(running: Running) -> None:
    """After a change whose answer was lost, kfbox sends every slot and map entry again: HAProxy's answers for
    what is already so (the slot's own address, a draining port the map lacks) are not logged as refused; a
    ready slot that is to hold another replica goes through maintenance to its new address."""
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    path = "/serving/default/iris/v1/models/iris"
    master = MasterSocket(running.home / "haproxy" / "master.sock")
    commands = map_commands(running.plan.revision_map, None, revisions(running.plan, {40099: A1.revision})) + \
        server_commands(None, running.plan)
    assert asyncio.run(master.run("@1", commands)) == []
    assert running.get(connection, path) == ("a1 /v1/models/iris", "iris-predictor-00001", None)
    b1 = NamedServer("b1")
    moved = dataclasses.replace(running.plan, routes=(route(dataclasses.replace(B1, port=b1.port), None, None, None),))
    commands = map_commands(moved.revision_map, None, revisions(moved, {})) + server_commands(None, moved)
    assert asyncio.run(master.run("@1", commands)) == []
    assert running.get(connection, path) == ("b1 /v1/models/iris", "iris-predictor-00002", None)  # same connection
    b1.server.shutdown()


def test_a_reload_keeps_an_idle_connection_for_its_next_request(running: Running) -> None:
    """``option idle-close-on-response``: the old worker answers the idle connection's next request (here
    through kfbox: an old worker routes nothing straight) and closes it then, not under the client."""
    idle = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    path = "/serving/default/iris/v1/models/iris"
    assert running.get(idle, path)[0] == "a1 /v1/models/iris"
    (before,), _ = haproxy_workers(running.home)
    os.kill(running.master.pid, signal.SIGUSR2)

    def reloaded() -> bool:
        current, old = haproxy_workers(running.home)
        return bool(current) and current != [before] and old == [before]

    wait_for(reloaded, 10, "a new worker, the old one kept by the idle connection")
    assert running.get(idle, path) == (f"kfbox {path}", None, "close")
    wait_for(lambda: haproxy_workers(running.home)[1] == [], 10, "the old worker gone once the connection closed")
    fresh = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    assert running.get(fresh, path)[0] == "a1 /v1/models/iris"  # the new worker routes straight

