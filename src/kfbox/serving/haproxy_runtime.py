"""HAProxy's runtime API for the data plane: replica changes without a reload.

Every routed InferenceService has two backends (least connections; round robin while it is split) with the same
fixed number of server *slots* (``s1``, ``s2``..., :func:`kfbox.serving.haproxy_config.slot_name`). A ready
replica holds a slot for its life; when the ready replicas or the canary weights change, kfbox moves slots
through the master CLI socket to the current worker (``@1 set server be/s2 addr 127.0.0.1 port N``, ``set
weight``, ``set server ... state ready|maint``) and keeps the port -> revision map (``x-kfbox-revision``) and the
split map (which services use round robin) in step (``add map``, ``del map``). No new worker, so no client
connection is closed under a client.

What is pure here plans it: :func:`service_route` is one service's route from its revisions' percents and ready
replicas, :func:`assign` keeps each replica in its slot and gives a new one a free slot
(never one just emptied, whose replica may still be finishing requests: :class:`FreedSlots` keeps those until
the replica is released, once it finished them or died, or the drain grace passed; :func:`place` adds slots when
too few are free),
:func:`layout` is what only a reload can change, :func:`server_commands` and :func:`map_commands` are the
commands from one state to the next. :class:`MasterSocket` talks to HAProxy's master CLI; :func:`stat_rows`
and :func:`worker_pids` read its answers.

Example::

    >>> from kfbox.serving.haproxy_config import Server
    >>> a, b = Server("iris-predictor-00001", 1, 40001), Server("iris-predictor-00002", 1, 40002)
    >>> assign((a, None), [b], busy=set(), size=2)   # a's slot is emptied, b takes the free one
    (None, Server(revision='iris-predictor-00002', index=1, port=40002, weight=1))
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from kfbox.serving.haproxy_config import REPLICA_MAXCONN, Plan, Route, Server, revision_weights, slot_name

SLOTS_MIN = 8
"""Slots a backend starts with at least: a scale up or a new revision within them needs no reload."""
SLOTS_START_MAX = 64
"""A large ``maxReplicas`` starts with this many slots; more are added (a reload) when they run out."""
BATCH = 40
"""Commands sent in one master CLI line (each about 60 bytes, a line must fit HAProxy's 16 kB buffer)."""
ADDR_FIELD = 73
"""``show stat``'s ``addr`` column (``127.0.0.1:PORT``), from 0."""


def slot_count(max_replicas: int) -> int:
    """Slots for a new backend: two revisions at ``max_replicas`` each (a rollout), within bounds."""
    return max(SLOTS_MIN, min(SLOTS_START_MAX, 2 * max_replicas))


def assign(current: Sequence[Server | None], servers: Sequence[Server], busy: Collection[int],
           size: int) -> tuple[Server | None, ...] | None:
    """The slots after a change: each of ``servers`` in the slot that holds its port already (its weight
    updated), else in the first slot that was empty in ``current`` and is not in ``busy``; a slot whose
    replica is not in ``servers`` any more is emptied (and not refilled in the same change). ``size`` may
    exceed ``len(current)`` (new empty slots); None when the free slots are too few."""
    slots: list[Server | None] = [*current[:size], *([None] * (size - len(current)))]
    held = {server.port: index for index, server in enumerate(slots) if server is not None}
    wanted = {server.port for server in servers}
    free = [index for index, server in enumerate(slots) if server is None and index not in busy]
    for index, server in enumerate(slots):
        if server is not None and server.port not in wanted:
            slots[index] = None
    for server in servers:
        if server.port in held:
            slots[held[server.port]] = server
        elif free:
            slots[free.pop(0)] = server
        else:
            return None
    return tuple(slots)


def place(current: Sequence[Server | None], servers: Sequence[Server], busy: Collection[int],
          size: int) -> tuple[Server | None, ...]:
    """:func:`assign`, with the slots doubled until the free ones are enough (more slots take a reload); the
    slots there were keep their positions."""
    size = max(size, 1)  # doubling from 0 would never make room
    slots = assign(current, servers, busy, size)
    while slots is None:
        size *= 2
        slots = assign(current, servers, busy, size)
    return slots


def service_route(namespace: str, name: str, percents: Mapping[str, int],
                  ready: Mapping[str, Sequence[tuple[int, int]]], current: Sequence[Server | None],
                  busy: Collection[int], max_replicas: int, limits: Mapping[str, int] | None = None) -> Route:
    """One InferenceService's route: each ready replica of a revision that takes traffic in a slot (:func:`place`:
    the one it holds in ``current``, else a free one not ``busy``), weighted so each revision gets its percent; a
    revision with no ready replica hands its share to the others.

    ``percents``: revision -> percent of the traffic (0: not routed, an old revision whose replicas are being
    stopped); ``ready``: revision -> (index, port) of each ready replica, in revision order; ``current``: the
    backend's slots now (none: a new backend, :func:`slot_count` of ``max_replicas`` slots); ``limits``: revision ->
    its ``containerConcurrency``, each of its replicas' ``maxconn`` (0 or absent: :data:`REPLICA_MAXCONN`).

    Example::

        >>> service_route("default", "iris", {"iris-predictor-00001": 100}, {"iris-predictor-00001": [(1, 40001)]},
        ...               (), busy=set(), max_replicas=1).slots[:2]
        (Server(revision='iris-predictor-00001', index=1, port=40001, weight=1), None)
    """
    split = {revision: pct for revision, pct in percents.items() if pct > 0}
    serving = {revision: replicas for revision, replicas in ready.items() if revision in split and replicas}
    weights = revision_weights({revision: split[revision] for revision in serving},
                               {revision: len(replicas) for revision, replicas in serving.items()}) if serving else {}
    servers = [Server(revision, index, port, weights[revision], (limits or {}).get(revision) or REPLICA_MAXCONN)
               for revision, replicas in serving.items() for index, port in replicas]
    slots = place(current, servers, busy, len(current) or slot_count(max_replicas))  # more slots: a reload
    return Route(namespace, name, slots, split=len(split) > 1)


@dataclasses.dataclass(frozen=True)
class Freed:
    """A slot whose replica was taken out, at ``at``."""

    port: int
    revision: str
    at: float


@dataclasses.dataclass
class FreedSlots:
    """The slots emptied while their replicas may still finish requests: not given to another replica until
    that one is released (:meth:`release`: before it stops, once no request of HAProxy's is at it), or it died
    (:meth:`died`: no request of its can still finish), or ``grace`` seconds passed (the bound on a drain); their
    revisions stay in the map meanwhile (:meth:`draining`).

    Example::

        >>> from kfbox.serving.haproxy_config import Route
        >>> a = Server("iris-predictor-00001", 1, 40001)
        >>> def plan(*slots): return Plan("127.0.0.1", 1, "127.0.0.1", 2, "d", 1, "/l", None,
        ...                               (Route("default", "iris", slots),))
        >>> freed = FreedSlots(grace=30.0)
        >>> freed.commit(plan(a, None), plan(None, None), now=100.0)
        >>> freed.busy("svc_default_iris"), freed.draining()
        ({0}, {40001: 'iris-predictor-00001'})
        >>> freed.expire(130.0); freed.busy("svc_default_iris")
        set()
        >>> freed.died(40001)   # before the change that takes it out: its slot is free once it is out
        >>> freed.commit(plan(a, None), plan(None, None), now=140.0); freed.busy("svc_default_iris")
        set()
    """

    grace: float
    slots: dict[tuple[str, int], Freed] = dataclasses.field(default_factory=dict)
    """(backend, slot index) -> the replica taken out of it."""
    dead: set[int] = dataclasses.field(default_factory=set)
    """Ports of replicas that died, until the change that takes them out of their slots."""

    def commit(self, before: Plan | None, after: Plan, now: float) -> None:
        """HAProxy went from ``before`` (None: nothing known) to ``after``: each slot whose replica left it
        is freed at ``now``, or at once when that replica died."""
        if before is not None:
            slots_after = {route.backend: route.slots for route in after.routes}
            for route in before.routes:
                slots = slots_after.get(route.backend, ())
                for index, server in enumerate(route.slots):
                    now_there = slots[index] if index < len(slots) else None
                    if server is not None and (now_there is None or now_there.port != server.port):
                        self.slots[(route.backend, index)] = Freed(server.port, server.revision, now)
        held = {server.port for route in after.routes for server in route.servers}
        for port in self.dead - held:
            self.release(port)
        self.dead &= held

    def died(self, port: int) -> None:
        """The replica on ``port`` died: its slots are free at once, the one it still holds once a change takes it
        out (:meth:`commit`)."""
        self.release(port)
        self.dead.add(port)

    def expire(self, now: float) -> None:
        """A slot whose replica was not released (still busy, or its release missed) is free again after the
        grace."""
        for key, freed in list(self.slots.items()):
            if now - freed.at >= self.grace:
                del self.slots[key]

    def release(self, port: int) -> None:
        """The replica on ``port`` finished its requests, died, or its grace ran out: its slots are free."""
        for key, freed in list(self.slots.items()):
            if freed.port == port:
                del self.slots[key]

    def clear(self) -> None:
        """A new HAProxy process, which has sent no request to any replica yet: every slot is free."""
        self.slots.clear()
        self.dead.clear()

    def busy(self, backend: str) -> set[int]:
        """The slots of ``backend`` not to be given to a replica now."""
        return {index for name, index in self.slots if name == backend}

    def draining(self) -> dict[int, str]:
        """Port -> revision of the replicas taken out and not released (:func:`revisions`' ``draining``)."""
        return {freed.port: freed.revision for freed in self.slots.values()}


def layout(plan: Plan) -> Plan:
    """What only a reload changes: the plan with its slots emptied (their number kept) and no split. Equal
    layouts: the runtime API moves one plan to the other."""
    return dataclasses.replace(plan, routes=tuple(
        dataclasses.replace(route, slots=(None,) * len(route.slots), split=False) for route in plan.routes))


def server_commands(before: Plan | None, after: Plan) -> list[str]:
    """Runtime API commands taking the slots of ``before`` to those of ``after`` (same :func:`layout`), in both of
    each service's backends (they hold the same slots); ``before`` None: state unknown, every slot set. Replicas
    are made ready first and taken out last, so a revision that replaces another always has a usable server (no
    request falls back to kfbox meanwhile).

    A slot gets another address only in maintenance: ``maint``, ``addr``, ``weight``, ``maxconn``, ``ready``. A slot
    kfbox emptied is in maintenance already; from an unknown state every slot that is to hold a replica is put there
    first, since it may be ready with another replica's address (a change whose answer was lost), and no new
    request may pick it between its new address and its new weight. (A service's only slot resent so leaves it
    no usable server for those few commands: its requests meanwhile go to kfbox, which answers them.)"""
    old = {route.backend: route.slots for route in before.routes} if before is not None else {}
    ready: list[str] = []
    weights: list[str] = []
    out: list[str] = []
    for route in after.routes:
        previous = old.get(route.backend)
        for index, server in enumerate(route.slots):
            was = previous[index] if previous is not None and index < len(previous) else None
            for name in (f"{backend}/{slot_name(index)}" for backend in route.backends):  # the same slots in both
                if server is None:
                    if was is not None or previous is None:
                        out.append(f"set server {name} state maint")
                elif was is None or was.port != server.port:
                    if was is not None or previous is None:  # perhaps ready (another address): out of use first
                        ready.append(f"set server {name} state maint")
                    ready += [f"set server {name} addr 127.0.0.1 port {server.port}",
                              f"set weight {name} {server.weight}", f"set maxconn server {name} {server.maxconn}",
                              f"set server {name} state ready"]
                elif was.weight != server.weight:
                    weights.append(f"set weight {name} {server.weight}")
    return ready + weights + out


def split_commands(path: str, before: Plan | None, after: Plan) -> tuple[list[str], list[str]]:
    """Runtime API commands taking the split map from ``before`` to ``after`` (None: unknown, every entry set):
    those to send before :func:`server_commands` (a split turned off: its requests to least connections before
    the weights are evened out) and those to send after (a split turned on, once the weights are the split's)."""
    was = {route.key for route in before.routes if route.split} if before is not None else None
    now = {route.key for route in after.routes if route.split}
    off = [f"del map {path} {route.key}" for route in after.routes
           if route.key not in now and (was is None or route.key in was)]
    on = [f"add map {path} {key} 1" for key in sorted(now) if was is None or key not in was]
    if was is None:  # an entry may be there already: never twice
        off += [f"del map {path} {key}" for key in sorted(now)]
    return off, on


def revisions(plan: Plan, draining: Mapping[int, str]) -> dict[int, str]:
    """The port -> revision map: the replicas in slots, and those still finishing requests (``draining``)."""
    held = {server.port: server.revision for route in plan.routes for server in route.servers}
    return {**draining, **held}


def map_text(entries: Mapping[int, str]) -> str:
    return "".join(f"{port} {revision}\n" for port, revision in sorted(entries.items()))


def map_commands(path: str, before: Mapping[int, str] | None, after: Mapping[int, str]) -> list[str]:
    """Runtime API commands taking the revision map from ``before`` to ``after``; ``before`` None: unknown,
    every entry replaced. Entries are added before any server is made ready (the commands go first)."""
    out: list[str] = []
    for port, revision in sorted(after.items()):
        if before is None or (port in before and before[port] != revision):
            out.append(f"del map {path} {port}")
        if before is None or before.get(port) != revision:
            out.append(f"add map {path} {port} {revision}")
    out += [f"del map {path} {port}" for port in sorted(before or {}) if port not in after]
    return out


@dataclasses.dataclass(frozen=True)
class StatRow:
    """One server row of ``show stat``."""

    backend: str
    server: str
    inflight: int
    """Requests at the server and in its queue (``scur`` + ``qcur``)."""
    total: int
    port: int
    status: str


def stat_rows(text: str) -> list[StatRow]:
    """The server rows of a ``show stat -1 4 -1`` answer (other lines, an error text, are skipped)."""
    rows = []
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) <= ADDR_FIELD or line.startswith("#"):
            continue
        try:
            rows.append(StatRow(fields[0], fields[1], int(fields[4] or 0) + int(fields[2] or 0),
                                int(fields[7] or 0), int(fields[ADDR_FIELD].rsplit(":", 1)[1]), fields[17]))
        except (ValueError, IndexError):
            continue
    return rows


def worker_pids(text: str) -> tuple[int | None, list[int]]:
    """From ``show proc``: the current worker's pid (None while there is none) and every worker's, the old
    ones (still finishing requests after a reload) included."""
    current: int | None = None
    pids: list[int] = []
    old = False
    for line in text.splitlines():
        if line.startswith("# old workers"):
            old = True
        fields = line.split()
        if len(fields) >= 2 and fields[1] == "worker" and fields[0].isdigit():
            pids.append(int(fields[0]))
            if not old and current is None:
                current = int(fields[0])
    return current, pids


class MasterSocket:
    """HAProxy's master CLI (``-S <path>``): one connection a question, as the CLI's non-interactive mode has it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def ask(self, command: str, timeout: float = 2.0) -> str | None:
        """The answer to one command line (``;``-separated commands, each with its ``@`` target); None when the
        master does not answer (restarting, reloading)."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.path))
        except OSError:
            return None
        try:
            writer.write(command.encode() + b"\n")
            writer.write_eof()  # the master CLI answers, then closes, once the client has said all
            await writer.drain()
            return (await asyncio.wait_for(reader.read(), timeout)).decode(errors="replace")
        except (OSError, TimeoutError):
            return None
        finally:
            writer.close()

    async def run(self, target: str, commands: Sequence[str]) -> list[str] | None:
        """Send ``commands`` to one worker (``@1`` the current one, ``@!<pid>`` any); the lines of the answers
        that say something went wrong (None: the master did not answer, whatever was applied is unknown)."""
        problems: list[str] = []
        for start in range(0, len(commands), BATCH):
            answer = await self.ask("; ".join(f"{target} {c}" for c in commands[start:start + BATCH]))
            if answer is None:
                return None
            problems += [line for line in answer.splitlines() if line.strip() and not _fine(line)]
        return problems


def _fine(line: str) -> bool:
    """An answer line that reports success: ``set server addr`` says what it changed, or that nothing needed to
    (``no need to change the addr, no need to change the port``: a slot given back the port it last had); ``del
    map`` of a key the map lacks, as when every entry is sent again (:func:`map_commands` from an unknown state),
    says ``Key not found.`` and leaves the map as wanted."""
    return "changed from" in line or line.lower().startswith("no need to change") or line == "Key not found."
