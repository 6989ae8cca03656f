"""Properties of the HAProxy data plane's runtime planning, over random histories of replica sets: replicas
starting, getting ready, failing, crashing and stopped, new revisions, canary percents, services created and
deleted, time passing.

The commands kfbox sends (:func:`server_commands`, :func:`map_commands`) are applied literally, parsed as
HAProxy's CLI parses them, to a model of what one worker holds (per backend: each slot's address, weight and
ready|maint state; the revision map, a multimap as HAProxy's is); a reload rebuilds the model from the
configuration :func:`render` writes and the map file. After every change the model must route exactly what
kfbox planned; while the commands run, a backend that serves before and after always has a ready server, a
server is made ready only once its port's revision is in the map, and a ready server's address never changes
(from an unknown state too: maint first). The slot bookkeeping (:func:`assign`,
:func:`place`, :class:`FreedSlots`) is checked against its promises: a replica keeps its slot, an emptied slot
stays empty while its replica may still finish requests (until released, or the grace after it was freed).

The steps mirror :meth:`kfbox.serving.haproxy.HaproxyDataPlane.sync` (``_plan``, ``_commit``, ``_apply``,
``_reload``, ``release``) with the same pure functions (a service's route is :func:`service_route`'s, as in
``_plan``, checked against the test's own expectations); the deployment records are plain values here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from kfbox.serving.haproxy_config import Plan, Route, Server, render, split_text
from kfbox.serving.haproxy_runtime import (
    FreedSlots,
    _fine,
    assign,
    layout,
    map_commands,
    map_text,
    place,
    revisions,
    server_commands,
    service_route,
    slot_count,
    split_commands,
)

GRACE = 30.0
MAP = "/tmp/kfbox-haproxy/revisions.map"
SPLIT = "/tmp/kfbox-haproxy/split.map"
BUDGET = settings(max_examples=200, deadline=None, derandomize=True, database=None)
"""Histories: a third of them change HAProxy at run time (the rest reload, or change nothing)."""
SMALL = settings(BUDGET, max_examples=100)
"""One change, one function: dense enough with fewer (the module stays under ~5 s of CPU)."""


def plan_of(routes: list[Route]) -> Plan:
    return Plan(bind_host="127.0.0.1", port=18081, kfbox_host="127.0.0.1", kfbox_port=18080, domain="example.com",
                max_body_bytes=1 << 20, log_socket="/tmp/log.sock", token_file=None,
                routes=tuple(sorted(routes, key=lambda r: r.key)), revision_map=MAP, split_map=SPLIT)


# --- a model of one HAProxy worker's runtime state ----------------------------------------------------------
@dataclasses.dataclass
class Slot:
    port: int
    weight: int
    ready: bool
    maxconn: int = 64


class Refused(AssertionError):
    """HAProxy would answer this command with an error."""


class Worker:
    """What kfbox changes in a worker at run time: each backend's ``server`` slots, the revision map and the split
    map. A map is a list, as HAProxy's: ``add map`` appends (a key may then be there twice), ``del map`` drops
    every entry of the key, a lookup returns the first."""

    def __init__(self, backends: dict[str, list[Slot]], entries: list[tuple[str, str]],
                 splits: list[str] | None = None) -> None:
        self.backends = backends
        self.entries = entries
        self.splits = splits or []
        """The split map's keys (``namespace/name``), a list as HAProxy's."""
        self.on_ready: Callable[[str, int], None] = lambda _backend, _port: None
        self.changed: Callable[[], None] = lambda: None

    @classmethod
    def started(cls, config: str, map_file: str, split_file: str = "") -> Worker:
        """A new worker (a reload, a start): its slots from the configuration, its maps from the files."""
        backends: dict[str, list[Slot]] = {}
        backend = ""
        for line in config.splitlines():
            if line.startswith("backend "):
                backend = line.split()[1]
            found = re.fullmatch(r"    server s(\d+) 127\.0\.0\.1:(\d+) weight (\d+) maxconn (\d+)( disabled)?", line)
            if found and backend.startswith(("svc_", "split_")):
                slots = backends.setdefault(backend, [])
                assert int(found[1]) == len(slots) + 1, line  # s1, s2... in order
                slots.append(Slot(int(found[2]), int(found[3]), found[5] is None, int(found[4])))
        entries = [(key, value) for key, value in (line.split(" ", 1) for line in map_file.splitlines())]
        return cls(backends, entries, [line.split(" ", 1)[0] for line in split_file.splitlines()])

    def slot(self, name: str) -> tuple[str, Slot]:
        backend, _, server = name.partition("/")
        slots = self.backends.get(backend)
        found = re.fullmatch(r"s(\d+)", server)
        if slots is None or found is None or not 1 <= int(found[1]) <= len(slots):
            raise Refused(f"No such server: {name}")
        return backend, slots[int(found[1]) - 1]

    def run(self, command: str) -> str:
        """Apply ``command``; HAProxy's answer (2.6.12's wording), or :class:`Refused`."""
        answer = ""
        match command.split(" "):
            case ["set", "server", name, "addr", "127.0.0.1", "port", port] if port.isdigit():
                backend, slot = self.slot(name)
                assert not slot.ready or slot.port == int(port), \
                    f"{command}: the address of a ready server changed (not in maint first)"
                moved = f"port changed from '{slot.port}' to '{port}'" if slot.port != int(port) else \
                    "no need to change the port"
                answer = f"no need to change the addr, {moved} by 'stats socket command'"
                slot.port = int(port)
            case ["set", "weight", name, weight] if weight.isdigit():
                if not 0 <= int(weight) <= 256:
                    raise Refused(f"{command}: weight out of range")
                self.slot(name)[1].weight = int(weight)
            case ["set", "maxconn", "server", name, maxconn] if maxconn.isdigit():
                self.slot(name)[1].maxconn = int(maxconn)
            case ["set", "server", name, "state", "ready" | "maint" as state]:
                backend, slot = self.slot(name)
                if state == "ready" and not slot.ready:
                    self.on_ready(backend, slot.port)
                slot.ready = state == "ready"
            case ["add", "map", path, key, value] if path == MAP:
                self.entries.append((key, value))
            case ["del", "map", path, key] if path == MAP:
                if all(k != key for k, _ in self.entries):
                    answer = "Key not found."
                self.entries = [(k, v) for k, v in self.entries if k != key]
            case ["add", "map", path, key, "1"] if path == SPLIT:
                self.splits.append(key)
            case ["del", "map", path, key] if path == SPLIT:
                if key not in self.splits:
                    answer = "Key not found."
                self.splits = [k for k in self.splits if k != key]
            case _:
                raise Refused(f"Unknown command: {command}")
        self.changed()
        return answer

    def lookup(self, port: int) -> str | None:
        return next((value for key, value in self.entries if key == str(port)), None)

    def ready(self, backend: str) -> int:
        return sum(slot.ready for slot in self.backends[backend])

    def routing(self) -> dict[str, tuple[tuple[int, int, int] | None, ...]]:
        """Per backend, each slot's (port, weight, maxconn) when ready, else None; and the split services (under
        "split")."""
        return {**{backend: tuple((s.port, s.weight, s.maxconn) if s.ready else None for s in slots)
                   for backend, slots in self.backends.items()},
                "split": tuple(sorted(self.splits))}  # type: ignore[dict-item]


def routing(plan: Plan) -> dict[str, tuple[tuple[int, int, int] | None, ...]]:
    """What the worker must hold for ``plan``: the same slots in both backends of a route, and its split keys."""
    return {**{backend: tuple((s.port, s.weight, s.maxconn) if s is not None else None for s in route.slots)
               for route in plan.routes for backend in route.backends},
            "split": tuple(sorted(route.key for route in plan.routes if route.split))}  # type: ignore[dict-item]


# --- the world kfbox watches, and kfbox's side of it ---------------------------------------------------------
@dataclasses.dataclass
class Replica:
    revision: str
    index: int
    port: int
    ready: bool


@dataclasses.dataclass
class Service:
    max_replicas: int
    percents: dict[str, int]
    """Revision -> percent of the traffic (0: not routed, an old revision whose replicas are being stopped)."""
    replicas: list[Replica] = dataclasses.field(default_factory=list)

    @property
    def latest(self) -> str:
        return list(self.percents)[-1]


@dataclasses.dataclass(frozen=True)
class Draining:
    """The test's own record of a slot emptied at run time: (its replica's port, its revision, when)."""

    port: int
    revision: str
    at: float


class DataPlane:
    """:class:`~kfbox.serving.haproxy.HaproxyDataPlane`'s bookkeeping, on :class:`Worker`, with every promise
    checked at each change."""

    def __init__(self) -> None:
        self.freed = FreedSlots(GRACE)
        self.plan: Plan | None = None
        self.revisions: dict[int, str] = {}
        self.worker: Worker | None = None
        self.draining: dict[tuple[str, int], Draining] = {}
        self.dead: set[int] = set()
        """The test's own account of the replicas that died and are still in a slot."""
        self.reloads = self.changes = 0

    def target(self, services: dict[str, Service], now: float) -> Plan:
        """``HaproxyDataPlane._plan`` (its per-service part, :func:`service_route`, is the real one): each ready
        replica of a routed revision in a slot, checked against what the test expects."""
        previous = {route.backend: route.slots for route in self.plan.routes} if self.plan is not None else {}
        self.freed.expire(now)
        routes = []
        for name, service in services.items():
            backend = Route("default", name, ()).backend
            current = previous.get(backend, ())
            busy = self.freed.busy(backend)
            ready = {revision: [(r.index, r.port) for r in service.replicas if r.revision == revision and r.ready]
                     for revision in service.percents}
            route = service_route("default", name, service.percents, ready, current, busy, service.max_replicas)
            routed = {r.port for r in service.replicas if r.ready and service.percents[r.revision] > 0}
            assert {server.port for server in route.servers} == routed, "every ready replica of a routed revision"
            assert route.split == (sum(pct > 0 for pct in service.percents.values()) > 1)
            check_weights(service, route)
            servers = list(route.servers)
            check_assignment(current, servers, busy, route.slots)
            size = len(current) or slot_count(service.max_replicas)
            assert len(route.slots) == size or assign(current, servers, busy, len(route.slots) // 2) is None, \
                "grown needlessly"
            routes.append(route)
        return plan_of(routes)

    def sync(self, services: dict[str, Service], now: float) -> None:
        plan = self.target(services, now)
        self.check_drains(plan, now)
        if plan == self.plan:
            return
        before, old_revisions = self.plan, dict(self.revisions)
        self.freed.commit(before, plan, now)  # _commit
        self.plan = plan
        self.revisions = revisions(plan, self.freed.draining())
        self.record_drains(before, plan, now)
        held = {server.port for route in plan.routes for server in route.servers}
        self.draining = {key: freed for key, freed in self.draining.items() if freed.port not in self.dead - held}
        self.dead &= held
        if before is not None and self.worker is not None and layout(plan) == layout(before):
            self.changes += 1
            self.apply(before, plan, runtime_commands(before, plan, old_revisions, self.revisions))
            assert len(self.worker.entries) == len(self.revisions), "a port twice in the map"
        else:
            self.reloads += 1
            self.worker = Worker.started(render(plan), map_text(self.revisions), split_text(plan))
        assert self.worker.routing() == routing(plan)
        assert {k: v for k, v in self.worker.entries} == {str(p): r for p, r in self.revisions.items()}
        for freed in self.draining.values():  # a replica still finishing requests keeps its revision's entry
            held = any(s is not None and s.port == freed.port for route in plan.routes for s in route.slots)
            if not held:
                assert self.worker.lookup(freed.port) in {d.revision for d in self.draining.values()
                                                          if d.port == freed.port}

    def apply(self, before: Plan, plan: Plan, commands: list[str]) -> None:
        """Run ``commands`` on the worker: no backend that serves before and after is ever left without a
        ready server, a server is made ready only with its revision in the map, and a service whose split turns
        on or off is sent to round robin only with the split's slots and weights."""
        worker = self.worker
        assert worker is not None
        serving = {backend for route in before.routes if route.servers for backend in route.backends} & \
            {backend for route in plan.routes if route.servers for backend in route.backends}
        was = {route.key: route for route in before.routes}
        toggled = [(was[route.key], route) for route in plan.routes
                   if route.key in was and was[route.key].split != route.split]

        def ready_with_revision(backend: str, port: int) -> None:
            assert worker.lookup(port) == self.revisions[port], f"{backend}: port {port} ready before its map entry"

        def never_empty() -> None:
            empty = [backend for backend in serving if worker.ready(backend) == 0]
            assert not empty, f"{empty} had no ready server during {commands}"
            for old, new in toggled:
                split = old if old.split else new
                if split.key in worker.splits:
                    held = worker.routing()[split.split_backend]
                    assert held == routing(plan_of([split]))[split.split_backend], \
                        f"{split.key} round robin with other weights than its split's: {held}"

        worker.on_ready, worker.changed = ready_with_revision, never_empty
        for command in commands:
            answer = worker.run(command)
            assert answer == "" or _fine(answer), f"{command}: {answer}"

    def record_drains(self, before: Plan | None, plan: Plan, now: float) -> None:
        """The test's own account of which slots were emptied when (the spec :class:`FreedSlots` implements)."""
        if before is None:
            return
        after = {route.backend: route.slots for route in plan.routes}
        for route in before.routes:
            slots = after.get(route.backend, ())
            for index, server in enumerate(route.slots):
                there = slots[index] if index < len(slots) else None
                if server is not None and (there is None or there.port != server.port):
                    self.draining[(route.backend, index)] = Draining(server.port, server.revision, now)

    def check_drains(self, plan: Plan, now: float) -> None:
        """A slot emptied at t gets no replica before its own was released or t + grace."""
        for (backend, index), freed in list(self.draining.items()):
            if now - freed.at >= GRACE:
                del self.draining[(backend, index)]
                continue
            slots = next((route.slots for route in plan.routes if route.backend == backend), ())
            if index < len(slots):
                assert slots[index] is None, f"{backend} slot {index} refilled while port {freed.port} drains"
        for backend in {route.backend for route in plan.routes} | {backend for backend, _ in self.draining}:
            assert self.freed.busy(backend) == {i for b, i in self.draining if b == backend}, "busy, not draining"

    def release(self, port: int) -> None:
        """``HaproxyDataPlane.release``'s end: the replica on ``port`` finished its requests."""
        self.freed.release(port)
        self.draining = {key: freed for key, freed in self.draining.items() if freed.port != port}

    def died(self, port: int) -> None:
        """``HaproxyDataPlane.forget``: the replica on ``port`` died; no sync (the loop's next one takes it out)."""
        self.freed.died(port)
        self.draining = {key: freed for key, freed in self.draining.items() if freed.port != port}
        self.dead.add(port)


def runtime_commands(before: Plan | None, plan: Plan, old_revisions: dict[int, str] | None,
                     new_revisions: dict[int, str]) -> list[str]:
    """What ``HaproxyDataPlane._apply`` sends, in its order (``before`` None: from an unknown state)."""
    off, on = split_commands(SPLIT, before, plan)
    return map_commands(MAP, old_revisions, new_revisions) + off + server_commands(before, plan) + on


def check_weights(service: Service, route: Route) -> None:
    """The revisions that serve get their percents of the weight (those with no ready replica hand theirs on)."""
    totals: dict[str, int] = {}
    for server in route.servers:
        totals[server.revision] = totals.get(server.revision, 0) + server.weight
    if len(totals) < 2 or max(route.servers, key=lambda s: s.weight).weight >= 256:  # one: any; capped: approximate
        return
    percents = {revision: service.percents[revision] for revision in totals}
    first, *others = totals
    for other in others:
        assert totals[first] * percents[other] == totals[other] * percents[first], (totals, percents)


def check_assignment(current: tuple[Server | None, ...], servers: list[Server], busy: set[int],
                     slots: tuple[Server | None, ...]) -> None:
    """:func:`place`'s promises for one backend's change."""
    ports = [s.port for s in slots if s is not None]
    assert len(ports) == len(set(ports)), f"a replica in two slots: {slots}"
    assert sorted(ports) == sorted(s.port for s in servers), "every ready replica has a slot"
    assert len(slots) >= len(current)
    wanted = {s.port: s for s in servers}
    for index, server in enumerate(slots):
        was = current[index] if index < len(current) else None
        if was is not None and was.port in wanted:
            assert server == wanted[was.port], f"the replica on {was.port} moved or kept a stale weight"
        elif was is not None or index in busy:
            assert server is None, f"slot {index} emptied or busy, yet refilled in the same change"


# --- histories -----------------------------------------------------------------------------------------------
Step = tuple[str, str, int, bool]
"""(what happens, to which service, a number, a flag); each kind reads the last two its own way."""
KINDS = ("start",) * 4 + ("sync",) * 4 + ("ready",) * 2 + ("stop", "crash", "revision", "canary", "wait", "create",
                                                            "delete")
steps = st.tuples(st.sampled_from(KINDS), st.sampled_from(("iris", "knn")), st.integers(0, 100), st.booleans())
PORTS = range(40001, 40017)  # few: a port is reused once its replica is gone, as free_port may


def run_history(history: list[Step]) -> DataPlane:
    """Apply ``history`` to two services (``iris`` and ``knn``, one revision, no replica yet) and kfbox's side,
    syncing where it says and at the end."""
    services = {name: Service(2, {f"{name}-predictor-00001": 100}) for name in ("iris", "knn")}
    plane = DataPlane()
    now = 1000.0
    for kind, name, number, flag in history:
        service = services.get(name)
        live = {r.port for s in services.values() for r in s.replicas}
        if kind == "create" and service is None:  # max replicas 1..4: 8 slots, or more once they run out
            services[name] = Service(1 + number % 4, {f"{name}-predictor-00001": 100})
        elif kind == "delete" and service is not None:
            del services[name]
            plane.sync(services, now)
            for replica in service.replicas:
                plane.release(replica.port)
        elif kind == "start" and service is not None:  # a new replica of the latest revision, ready or not yet
            port = next((p for p in PORTS if p not in live), None)
            if port is not None:
                index = 1 + max((r.index for r in service.replicas if r.revision == service.latest), default=0)
                service.replicas.append(Replica(service.latest, index, port, flag))
        elif kind == "ready" and service is not None and service.replicas:  # gets ready, or fails its probe
            service.replicas[number % len(service.replicas)].ready = flag
        elif kind in ("stop", "crash") and service is not None and service.replicas:
            replica = service.replicas.pop(number % len(service.replicas))
            if kind == "stop":  # scaled down: release() syncs (the replica is out), waits, releases
                plane.sync(services, now)
                plane.release(replica.port)
            elif replica.ready:  # a ready one died: the pool calls forget() as it reaps it
                plane.died(replica.port)
        elif kind == "revision" and service is not None:  # a new revision takes all the traffic
            revision = f"{name}-predictor-{len(service.percents) + 1:05d}"
            service.percents = {**{n: 0 for n in service.percents}, revision: 100}
        elif kind == "canary" and service is not None and len(service.percents) >= 2:
            *older, previous, latest = service.percents
            service.percents = {**{n: 0 for n in older}, previous: 100 - number, latest: number}
        elif kind == "wait":
            now += (0.1, GRACE / 2, GRACE)[number % 3]
        elif kind == "sync":
            plane.sync(services, now)
        now += 0.1
    plane.sync(services, now)
    return plane


@BUDGET
@given(st.lists(steps, min_size=5, max_size=50))
# a port reused by the slot that last had it: HAProxy says "no need to change the addr, no need to change the port"
@example([("start", "iris", 0, True), ("sync", "iris", 0, False), ("revision", "iris", 0, False),
          ("start", "iris", 0, True), ("sync", "iris", 0, False), ("stop", "iris", 0, False),
          ("start", "iris", 0, True)])
@example([("start", "iris", 0, True), ("revision", "iris", 0, False), ("start", "iris", 0, True),
          ("canary", "iris", 50, False), ("sync", "iris", 0, False), ("canary", "iris", 20, False)])  # new weights
@example([("start", "iris", 0, True), ("sync", "iris", 0, False), ("crash", "iris", 0, False),
          ("start", "iris", 0, True), ("sync", "iris", 0, False)])  # a crashed replica's slot, free at once
@example([("start", "iris", 0, True), ("sync", "iris", 0, False), ("revision", "iris", 0, False),
          ("start", "iris", 0, True), ("sync", "iris", 0, False), ("canary", "iris", 20, False),
          ("sync", "iris", 0, False), ("revision", "iris", 0, False)])  # a split on (new weights), then off
def test_haproxy_routes_what_kfbox_planned_after_every_change(history: list[Step]) -> None:
    plane = run_history(history)
    event(f"runtime changes: {min(plane.changes, 3)}{'+' if plane.changes > 3 else ''}")


def test_a_scale_up_and_a_new_revision_change_haproxy_at_run_time() -> None:
    """No reload but the first: the runtime path is the one the properties above exercise."""
    plane = run_history([("start", "iris", 0, True), ("sync", "", 0, False), ("start", "iris", 0, True),
                         ("sync", "", 0, False), ("revision", "iris", 0, False), ("start", "iris", 0, True),
                         ("start", "iris", 0, True), ("sync", "", 0, False), ("stop", "iris", 0, False),
                         ("stop", "iris", 0, False), ("wait", "", 2, False)])
    assert (plane.reloads, plane.changes) == (1, 2)  # a scale up, then the new revision in and the old out


# --- assign and place alone ----------------------------------------------------------------------------------
def server(port: int, weight: int = 1) -> Server:
    return Server(f"r{port % 3}", port, port, weight)


slot_lists = st.lists(st.one_of(st.none(), st.integers(0, 15).map(server)), max_size=10).filter(
    lambda slots: len({s.port for s in slots if s}) == len([s for s in slots if s]))


@SMALL
@given(slot_lists, st.lists(st.integers(0, 15), unique=True, max_size=12), st.sets(st.integers(0, 12)),
       st.integers(0, 6), st.integers(1, 5))
def test_assign_keeps_replicas_in_place_and_refuses_only_when_slots_run_out(
        current: list[Server | None], ports: list[int], busy: set[int], extra: int, weight: int) -> None:
    servers = [server(port, weight) for port in ports]
    busy = {i for i in busy if i >= len(current) or current[i] is None}  # kfbox marks only emptied slots busy
    size = len(current) + extra
    held = {s.port for s in current if s is not None}
    free = [i for i in range(size) if (i >= len(current) or current[i] is None) and i not in busy]
    newcomers = [s for s in servers if s.port not in held]
    slots = assign(current, servers, busy, size)
    if len(newcomers) > len(free):
        assert slots is None
        return
    assert slots is not None and len(slots) == size
    check_assignment(tuple(current), servers, busy, slots)
    assert [slots[i] for i in free[:len(newcomers)]] == newcomers  # the first free slots, in order
    assert assign(current, servers, busy, size + 3) == (*slots, None, None, None)  # growth keeps positions
    start = max(1, len(current))
    grown = place(current, servers, busy, start)  # doubled until enough: the fewest that do
    check_assignment(tuple(current), servers, busy, grown)
    assert len(grown) == start or (len(grown) % start == 0 and assign(current, servers, busy, len(grown) // 2) is None)


# --- one change, and the freed slots, alone -------------------------------------------------------------------
def on_port(slot: Server | None) -> Server | None:
    return dataclasses.replace(slot, port=40000 + slot.port) if slot is not None else None


@SMALL
@given(slot_lists.filter(bool), st.lists(st.tuples(st.integers(0, 15), st.integers(1, 256)),
                                         unique_by=lambda pair: pair[0], max_size=10),
       st.sets(st.integers(0, 9)), st.dictionaries(st.integers(40100, 40103), st.sampled_from(("r0", "r1"))))
def test_one_change_at_run_time_reaches_the_plan(current: list[Server | None], wanted: list[tuple[int, int]],
                                                 busy: set[int], draining: dict[int, str]) -> None:
    """Any replicas kept (new weights), added or taken out within the slots there are: the worker then routes
    the plan, with a ready server throughout where one was ready before and after."""
    busy = {i for i in busy if i < len(current) and current[i] is None}
    before = plan_of([Route("default", "iris", tuple(on_port(s) for s in current))])
    slots = assign(before.routes[0].slots, [Server(f"r{p % 3}", p, 40000 + p, w) for p, w in wanted], busy,
                   len(current))
    if slots is None:  # more slots: a reload
        return
    plan = plan_of([Route("default", "iris", slots)])
    freed = FreedSlots(GRACE)
    freed.commit(before, plan, 0.0)
    plane = DataPlane()
    old_revisions = revisions(before, draining)
    plane.revisions = revisions(plan, {**draining, **freed.draining()})
    plane.worker = Worker.started(render(before), map_text(old_revisions))
    plane.apply(before, plan, runtime_commands(before, plan, old_revisions, plane.revisions))
    assert plane.worker.routing() == routing(plan)
    assert dict(plane.worker.entries) == {str(p): r for p, r in plane.revisions.items()}


@SMALL
@given(st.lists(st.tuples(slot_lists, st.integers(0, 15), st.sampled_from((0.1, GRACE / 2, GRACE)),
                          st.sampled_from(("release", "died", "nothing"))), max_size=12))
def test_a_freed_slot_is_busy_until_released_its_replica_died_or_the_grace_passed(
        steps: list[tuple[list[Server | None], int, float, str]]) -> None:
    freed, spec = FreedSlots(GRACE), DataPlane()
    before, now = None, 0.0
    for slots, port, wait, then in steps:
        plan = plan_of([Route("default", "iris", tuple(slots))])
        freed.commit(before, plan, now)
        spec.record_drains(before, plan, now)
        held = {server.port for server in slots if server is not None}
        spec.draining = {key: d for key, d in spec.draining.items() if d.port not in spec.dead - held}
        spec.dead &= held
        before, now = plan, now + wait
        if then == "release":
            freed.release(port)
            spec.draining = {key: d for key, d in spec.draining.items() if d.port != port}
        elif then == "died":  # in a slot still (the next change takes it out) or already out of it
            freed.died(port)
            spec.draining = {key: d for key, d in spec.draining.items() if d.port != port}
            spec.dead.add(port)
        freed.expire(now)
        spec.draining = {key: d for key, d in spec.draining.items() if now - d.at < GRACE}
        assert freed.busy("svc_default_iris") == {index for _, index in spec.draining}
        assert freed.draining().keys() == {d.port for d in spec.draining.values()}


# --- from an unknown state -----------------------------------------------------------------------------------
@SMALL
@given(slot_lists.filter(bool), st.lists(st.tuples(st.integers(0, 15), st.integers(1, 256), st.booleans()),
                                         min_size=10, max_size=10),
       st.lists(st.tuples(st.integers(40000, 40015), st.sampled_from(("r0", "r1", "stale"))), max_size=12),
       st.booleans(), st.integers(0, 2))
# HAProxy's answers to a slot's own address and to a key the map lacks were logged as refused
@example([server(0)], [(0, 1, True)] * 10, [], False, 0)
def test_commands_from_an_unknown_state_reach_the_plan(slots: list[Server | None],
                                                       leftover: list[tuple[int, int, bool]],
                                                       entries: list[tuple[int, str]], split: bool,
                                                       split_entries: int) -> None:
    """After a failed runtime change (the master did not answer) kfbox sends everything again: whatever the
    worker held (each backend's slots, the split map's entries), it then routes the plan, and every routed
    port's revision is found in the map."""
    ports = {s.port: s.revision for s in slots if s is not None}
    worker = Worker({"svc_default_iris": [Slot(40000 + p, w, r) for p, w, r in leftover[:len(slots)]],
                     "split_default_iris": [Slot(40000 + p, w, not r) for p, w, r in leftover[::-1][:len(slots)]]},
                    [(str(p), r) for p, r in entries], ["default/iris"] * split_entries)
    wanted = {40000 + port: revision for port, revision in ports.items()}
    plan = plan_of([Route("default", "iris", tuple(dataclasses.replace(s, port=40000 + s.port) if s else None
                                                   for s in slots), split=split)])
    for command in runtime_commands(None, plan, None, wanted):
        answer = worker.run(command)
        assert answer == "" or _fine(answer), f"kfbox would log '{command}' as refused: {answer}"
    assert worker.routing() == routing(plan)
    assert all(worker.lookup(port) == revision for port, revision in wanted.items())
