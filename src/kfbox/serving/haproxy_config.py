"""HAProxy's configuration for the optional data plane, written from what the serving manager knows.

A pure function of a :class:`Plan`: the InferenceServices that have a ready replica, their ready
replicas and the traffic split. The configuration sends a request straight to a replica only when
kfbox would have sent it there without a question asked, and everything else to kfbox's own server
(the Python gateway and the rest of the platform), which answers it as it always does:

- an inference request is **routed** by ``Host: {name}.{namespace}.{domain}`` (also
  ``{name}-predictor...``), else by ``/serving/{namespace}/{name}/...`` (prefix stripped), as
  :class:`~kfbox.serving.gateway.HostRouting` and the gateway do; only to a service with a ready
  replica: a cold start, a scale from zero, a failing or unknown service goes to kfbox, which
  holds the request, starts a replica or answers KServe's error;
- **auth**: with a token, only a request whose ``Authorization`` is exactly ``Bearer <token>`` is
  routed (the token is in a 0600 pattern file, not in the configuration); any other (a session
  cookie, a wrong token) goes to kfbox, which decides;
- **anything unusual goes to kfbox**: a dot segment, ``//`` or a ``%`` in the path (kfbox's guard
  and path decoding judge it), an ``Origin`` header (a browser: kfbox's Origin check), an
  ``Upgrade``, a chunked body, a body over ``serving_max_body_bytes``, a ``Host`` that is neither a
  model's nor an IP literal or ``localhost``;
- **server slots**: two backends per InferenceService, ``svc_...`` (``balance leastconn``) and ``split_...``
  (``balance roundrobin``), with the same fixed number of ``server`` lines (``s1``, ``s2``...); a ready
  replica holds one in each (its port, its weight), an empty one is ``disabled``. kfbox fills and empties
  slots at run time (:mod:`kfbox.serving.haproxy_runtime`), so the text only changes when a service comes or
  goes or its slots run out; a service with no usable slot (``nbsrv`` 0: scaled to zero, starting) is not
  routed, and kfbox's gateway holds or answers its requests;
- **canary split**: one server per ready replica, weighted so each revision gets its percent
  (HAProxy's weighted round robin is smooth, as kfbox's); a revision with no ready replica hands its
  share to the other, as :meth:`Deployment.choose` does; the replica's revision comes from a map file
  (port -> revision, also changed at run time) into ``x-kfbox-revision``. A split service's requests go to its
  ``split_`` backend, the others' to ``svc_`` (``leastconn``: no request to a busy replica while another is
  idle), by a second map file (``namespace/name`` of each split service, changed at run time), so turning a
  split on or off is no reload: weighted ``leastconn`` ignores the weights among idle servers, the split needs
  ``roundrobin`` (benchmarks/haproxy_balance.py);
- **overload**: more than ``queue_per_replica`` x usable servers in flight is a 503 at once, with
  ``retry-after: 1`` and KServe's body, as the gateway's bound;
- **reloads**: ``option idle-close-on-response``: an old worker keeps a client's idle keep-alive connection
  for its next request (answered with ``connection: close``) instead of closing it under the client; an old
  worker routes nothing straight to a replica (its backends count no usable server), so that request goes
  to kfbox, which knows the current replicas;
- **errors**: a replica's ``{"detail": ...}`` (FastAPI's 404/405/422) and plain-text errors are
  rewritten as ``{"error": ...}``; HAProxy's own 502/503/504 have KServe's body too;
- **gRPC**: a request with ``content-type: application/grpc`` (HTTP/2 in clear text, which HAProxy tells
  from HTTP/1.1 by its preface) goes to kfbox's gRPC gateway when it is on, so one ingress port serves
  both protocols, as Istio's does for KServe; the gateway routes it by model name and checks the token;
- **metrics**: one log line per routed request, ``<h|p>:<namespace>/<name> <status> <ms>``, into a ring
  buffer that HAProxy forwards over a unix stream socket, which kfbox counts under its ``kfbox_serving_*``
  names (:mod:`kfbox.serving.haproxy_log`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

from kfbox.addresses import bracket

ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 501, 502, 503, 504)
"""Replica error statuses whose body is rewritten to KServe's shape."""
MAX_WEIGHT = 256
REPLICA_MAXCONN = 64
"""Requests HAProxy has open to one replica at once; more wait in HAProxy's queue (kserve answers one at a
time per process anyway: a deeper queue inside the replica only hides the wait). A revision's
``containerConcurrency`` replaces it (:attr:`Server.maxconn`), Knative's queue-proxy's hard limit."""
EMPTY_SLOT_PORT = 9
"""The port an empty (``disabled``) slot names until a replica takes it: nothing is ever sent there."""
PROBE_PATH = "/.kfbox/data-plane"
PROBE_HEADER = "x-kfbox-data-plane"
"""HAProxy answers ``GET PROBE_PATH`` with 204 and this header itself: kfbox's proof that the program
listening on the ingress port is its HAProxy (another program may hold the port)."""
LOG_RING = "kfbox_requests"
LOG_RING_BYTES = 1 << 20
"""HAProxy's buffer of log lines not yet read by kfbox: about 40,000 lines, seconds of them at the highest
rates this data plane serves."""
FALLBACK = "kfbox"
GRPC = "kfbox_grpc"


@dataclasses.dataclass(frozen=True)
class Server:
    revision: str
    index: int
    port: int
    weight: int = 1
    maxconn: int = REPLICA_MAXCONN
    """Requests at once at most (the revision's ``containerConcurrency``, else :data:`REPLICA_MAXCONN`); more
    wait in HAProxy's queue (``timeout queue``)."""


@dataclasses.dataclass(frozen=True)
class Route:
    namespace: str
    name: str
    slots: tuple[Server | None, ...]
    """The backend's server slots (``s1``, ``s2``...): the replica each holds, or None (``disabled``)."""
    split: bool = False
    """More than one revision takes traffic: weighted round robin (:attr:`split_backend`), not least connections."""

    @property
    def servers(self) -> tuple[Server, ...]:
        return tuple(server for server in self.slots if server is not None)

    @property
    def backend(self) -> str:
        """The backend with least connections, which the slots are known by."""
        return f"svc_{self.namespace}_{self.name}"  # DNS labels have no '_': unambiguous

    @property
    def split_backend(self) -> str:
        """The backend with weighted round robin, its slots the same, used while the service is :attr:`split`."""
        return f"split_{self.namespace}_{self.name}"

    @property
    def backends(self) -> tuple[str, str]:
        return self.backend, self.split_backend

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the configuration depends on; equal plans give equal text (no needless reload)."""

    bind_host: str
    port: int
    kfbox_host: str
    kfbox_port: int
    domain: str
    max_body_bytes: int
    log_socket: str
    token_file: str | None
    routes: tuple[Route, ...] = ()
    kfbox_maxconn: int = 512
    """Connections HAProxy opens to kfbox at most: kfbox caps connections per client address, and HAProxy's
    all come from one."""
    threads: int = 1
    grpc_port: int | None = None
    """kfbox's gRPC gateway port (on ``kfbox_host``), where gRPC calls to the ingress go; None: it is off."""
    drain_seconds: float = 30.0
    """An old worker's grace after a reload (``hard-stop-after``): its requests still running then are cut."""
    queue_per_replica: int = 128
    """Requests in flight per usable server above which a service answers 503."""
    revision_map: str = "/dev/null"
    """The map file of replica port -> revision name (``x-kfbox-revision``); kfbox writes it and changes it at
    run time."""
    split_map: str = "/dev/null"
    """The map file of the split services (``namespace/name 1``): their requests go to their
    :attr:`Route.split_backend`; kfbox writes it and changes it at run time."""


def revision_weights(percents: dict[str, int], ready: dict[str, int]) -> dict[str, int]:
    """Weight per *server* of each revision, so that the revisions' totals are in the ratio of their percents.

    ``percents`` (revision -> percent) and ``ready`` (revision -> ready replicas) cover the revisions that
    serve; HAProxy weights are 1..256, so large products are scaled down (the split is then approximate).
    """
    raw = {rev: pct * math.prod(n for other, n in ready.items() if other != rev) for rev, pct in percents.items()}
    divisor = math.gcd(*raw.values()) or 1
    weights = {rev: value // divisor for rev, value in raw.items()}
    top = max(weights.values())
    if top > MAX_WEIGHT:
        weights = {rev: max(1, round(w * MAX_WEIGHT / top)) for rev, w in weights.items()}
    return weights


def _quote(text: str) -> str:
    """A string HAProxy's parser reads back as is: single quotes, within which nothing is special."""
    if "'" in text or "\n" in text:
        raise ValueError(f"cannot put {text!r} in HAProxy's configuration")
    return f"'{text}'"


def _plain(path: str) -> str:
    """A path put unquoted into a sample expression's argument."""
    if not re.fullmatch(r"[\w./+-]+", path):
        raise ValueError(f"cannot put {path!r} in a HAProxy sample expression")
    return path


def slot_name(index: int) -> str:
    """The ``server`` name of a backend's slot ``index`` (from 0)."""
    return f"s{index + 1}"


def render(plan: Plan) -> str:
    """The whole haproxy.cfg for ``plan``."""
    lines = [
        "# written by kfbox (kfbox.serving.haproxy_config); servers change at run time "
        "(kfbox.serving.haproxy_runtime); do not edit",
        "global",
        f"    log ring@{LOG_RING} local0 info",
        f"    nbthread {plan.threads}",
        "    maxconn 8192",
        f"    hard-stop-after {max(1, math.ceil(plan.drain_seconds * 1000))}ms",
        f"ring {LOG_RING}",  # forwarded to kfbox over a stream: a datagram queue drops lines (haproxy_log)
        "    format raw",
        "    maxlen 1024",
        f"    size {LOG_RING_BYTES}",
        "    timeout connect 2s",
        "    timeout server 60s",
        f"    server kfbox unix@{plan.log_socket} log-proto legacy",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 300s",
        "    timeout queue 300s",
        "    timeout http-request 20s",
        "    timeout http-keep-alive 5s",
        "    retries 2",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        *(_error(status, message) for status, message in (
            (400, "Bad request."), (408, "The request was not received in time."),
            (502, "The replica failed during the request."), (503, "No replica can serve this request now."),
            (504, "The replica did not answer in time."))),
        "frontend ingress",
        f"    bind {bracket(plan.bind_host)}:{plan.port}",
        "    option idle-close-on-response",
        "    log-format '%[var(txn.svc)] %ST %Ta'",
        "    acl unusual path_sub /. // %",
        "    acl unusual req.hdr_cnt(origin) gt 0",
        "    acl unusual req.hdr_cnt(upgrade) gt 0",
        "    acl unusual req.hdr_cnt(transfer-encoding) gt 0",
        f"    acl unusual req.hdr_val(content-length) gt {plan.max_body_bytes}",
        "    acl plain_host var(txn.host) -m reg ^(localhost|[0-9.]+)$",
        f"    acl model_host var(txn.host) -m end .{plan.domain.lower()}",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        # kfbox's readiness probe, answered by HAProxy itself: a connection alone could be another program's
        f"    http-request set-log-level silent if {{ path {PROBE_PATH} }}",
        f"    http-request return status 204 hdr {PROBE_HEADER} haproxy if {{ path {PROBE_PATH} }}",
    ]
    qualified = "!unusual"
    if plan.token_file is not None:
        lines.append(f"    acl authorized req.fhdr(authorization) -m str -f {_quote(plan.token_file)}")
        qualified = "authorized !unusual"
    if plan.grpc_port is not None:  # a gRPC call is the gRPC gateway's (which counts it), whatever its Host
        lines.append("    acl grpc req.hdr(content-type) -m beg application/grpc")
        qualified += " !grpc"
    # what every route asks is asked once, into variables: with a rule per route, 30 services asked it 60
    # times a request (+0.05 ms of HAProxy's CPU, benchmarks/data_plane.py --services)
    lines += [f"    http-request set-var(txn.by_host) bool(true) if {qualified} model_host",
              f"    http-request set-var(txn.by_path) bool(true) if {qualified} plain_host"]
    for route in plan.routes:
        hosts = " ".join(f"{name}.{route.namespace}.{plan.domain.lower()}" for name in
                         (route.name, route.name + "-predictor"))
        lines.append(f"    http-request set-var(txn.svc) str(h:{route.key}) if {{ var(txn.by_host) -m bool }} "
                     f"{{ var(txn.host) -m str {hosts} }} {{ nbsrv({route.backend}) gt 0 }}")
    for route in plan.routes:
        lines.append(f"    http-request set-var(txn.svc) str(p:{route.key}) if {{ var(txn.by_path) -m bool }} "
                     f"!{{ var(txn.svc) -m found }} {{ path_beg /serving/{route.key}/ }} "
                     f"{{ nbsrv({route.backend}) gt 0 }}")
    lines += [
        r"    http-request replace-path ^/serving/[^/]+/[^/]+(/.*)$ \1 if { var(txn.svc) -m beg p: }",
        "    http-request set-log-level silent if !{ var(txn.svc) -m found }",
        # the route's backends by name: svc_/split_ + namespace_name ('_' is in neither)
        "    http-request set-var(txn.route) var(txn.svc),field(2,:) if { var(txn.svc) -m found }",
        "    http-request set-var(txn.backend) var(txn.route),regsub(/,_) if { var(txn.svc) -m found }",
    ]
    if plan.grpc_port is not None:
        lines.append(f"    use_backend {GRPC} if grpc")
    lines += [f"    use_backend split_%[var(txn.backend)] if {{ var(txn.backend) -m found }} "
              f"{{ var(txn.route),map({_plain(plan.split_map)}) -m found }}",
              "    use_backend svc_%[var(txn.backend)] if { var(txn.backend) -m found }"]
    lines += [
        f"    default_backend {FALLBACK}",
        f"backend {FALLBACK}",
        f"    server kfbox {bracket(plan.kfbox_host)}:{plan.kfbox_port} maxconn {plan.kfbox_maxconn}",
    ]
    if plan.grpc_port is not None:
        lines += [f"backend {GRPC}", f"    server grpc {bracket(plan.kfbox_host)}:{plan.grpc_port} proto h2"]
    for route in plan.routes:
        lines += _backend(route, plan, route.backend, "leastconn") + _backend(route, plan, route.split_backend,
                                                                              "roundrobin")
    return "\n".join(lines) + "\n"


def split_text(plan: Plan) -> str:
    """The split map file's text: one line per split service."""
    return "".join(f"{route.key} 1\n" for route in plan.routes if route.split)


def _backend(route: Route, plan: Plan, name: str, balance: str) -> list[str]:
    overloaded = json.dumps({"error": f"InferenceService {route.key} is overloaded: more than %[var(txn.cap)] "
                                      "requests are waiting. Retry shortly, or raise maxReplicas."})
    revision = f"%[bc_dst_port,map_int({_plain(plan.revision_map)})]"
    lines = [
        f"backend {name}",
        f"    balance {balance}",
        f"    http-request set-var(txn.cap) nbsrv,mul({plan.queue_per_replica})",
        f"    http-request return status 503 content-type application/json lf-string {_quote(overloaded)} "
        "hdr retry-after 1 if { be_conn,sub(txn.cap) gt 0 }",
        "    http-request del-header authorization",
        "    http-request del-header proxy-authorization",
        "    http-request del-header cookie",
        "    http-response del-header server",
        f"    http-response set-header x-kfbox-revision {revision}",
        # a replica's error body in KServe's shape: {"detail": X} -> {"error": X}; text -> {"error": "text"}
        "    http-response wait-for-body time 5s if { status ge 400 }",
        r"""    http-response set-var(txn.errjson) 'res.body,regsub(^\{\"detail\":,{\"error\":)' """
        """if { status ge 400 } !{ status 422 } { res.body -m beg '{"detail"' }""",
        "    http-response set-var(txn.errtext) res.body,json(utf8s) if { status ge 400 } "
        """!{ var(txn.errjson) -m found } !{ res.body -m beg '{"error"' }""",
    ]
    for status in ERROR_CODES:
        allow = " hdr allow %[var(txn.allow)]" if status == 405 else ""
        prefix = "Invalid request: " if status == 422 else ""
        if status == 405:
            lines.append("    http-response set-var(txn.allow) res.hdr(allow) if { status 405 }")
        lines += [
            f"    http-response return status {status} content-type application/json "
            f"lf-string '%[var(txn.errjson)]' hdr x-kfbox-revision {revision}{allow} "
            f"if {{ status {status} }} {{ var(txn.errjson) -m found }}",
            f"    http-response return status {status} content-type application/json "
            f"""lf-string '{{"error": "{prefix}%[var(txn.errtext)]"}}' hdr x-kfbox-revision {revision}{allow} """
            f"if {{ status {status} }} {{ var(txn.errtext) -m found }}",
        ]
    lines += [_error(503, f"InferenceService {route.key} cannot serve: no replica answered. "
                          f"See: kfbox serve get {route.name}"),
              _error(502, f"A replica of InferenceService {route.key} failed during the request."),
              _error(504, f"A replica of InferenceService {route.key} did not answer in time.")]
    for index, server in enumerate(route.slots):  # an empty slot's address is set when a replica takes it
        where, state = (f"{server.port} weight {server.weight} maxconn {server.maxconn}", "") \
            if server is not None else (f"{EMPTY_SLOT_PORT} weight 1 maxconn {REPLICA_MAXCONN}", " disabled")
        lines.append(f"    server {slot_name(index)} 127.0.0.1:{where}{state}")
    return lines


def _error(status: int, message: str) -> str:
    return (f"    http-error status {status} content-type application/json "
            f"string {_quote(json.dumps({'error': message}))}")
