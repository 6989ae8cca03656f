"""``kfbox up``, ``kfbox down``, ``kfbox status``: run and manage the platform server."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kfbox.addresses import is_wildcard, local_url
from kfbox.cli import output as cli_output
from kfbox.cli.options import HomeOption, OutputOption
from kfbox.cli.output import Output, print_json, print_pairs
from kfbox.config import Settings, default_home
from kfbox.errors import KfboxError, Unavailable
from kfbox.server.record import pid_alive, read_record

READY_TIMEOUT_SECONDS = 60.0
PROMETHEUS_READY_TIMEOUT_SECONDS = 120.0
"""How long ``kfbox up --prometheus`` waits for Prometheus to answer queries (it replays its data first)."""


def up(
    host: Annotated[str | None, typer.Option(help="Address to bind. Anything but loopback needs --token.", show_default="127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind; 0 picks a free one.", show_default="8080")] = None,
    home: HomeOption = None,
    db: Annotated[str | None, typer.Option("--db", help="Metadata database URL: sqlite:///..., postgresql://..., mysql://...", show_default="sqlite in the home")] = None,
    token: Annotated[str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN' on every API call. Env: KFBOX_TOKEN.", show_default=False)] = None,
    containers: Annotated[str | None, typer.Option("--containers", help="How container components run: auto (docker or podman when its engine answers), docker, podman, host (the command on this machine, image unused). Env: KFBOX_CONTAINER_RUNTIME.", show_default="auto")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option("--allowed-host", help="Another name clients reach the server by (repeatable; *.domain for a whole domain). Loopback, IP addresses and *.<ingress domain> are always accepted; other Host headers get 400 (DNS-rebinding defence). Env: KFBOX_ALLOWED_HOSTS (comma-separated).", show_default=False)] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run in the background; logs go to HOME/logs/server.log.")] = False,
    prometheus: Annotated[bool | None, typer.Option("--prometheus", help="Also start a local Prometheus (Debian's prometheus) that scrapes the server and every replica; data in HOME/monitoring. Env: KFBOX_PROMETHEUS.", show_default=False)] = None,
    data_plane: Annotated[str | None, typer.Option("--data-plane", help="python: inference through the server's own gateway only. haproxy: also start Debian's haproxy on --ingress-port, configured by kfbox, which sends inference straight to ready replicas (anything else, and cold starts, to the server). handoff: the server's port passes a model's connections to a ready replica, which answers them itself (no hop; balanced per connection, as a Kubernetes Service). Env: KFBOX_DATA_PLANE.", show_default="python")] = None,
    ingress_port: Annotated[int | None, typer.Option("--ingress-port", help="HAProxy's port with --data-plane haproxy; 0 picks a free one. Env: KFBOX_INGRESS_PORT.", show_default="the server's port + 1")] = None,
) -> None:
    """Start the platform: KFP API, Model Registry, serving gateway, dashboard and /metrics on one port.

    Runs in the foreground until Ctrl-C (in-flight requests finish first), or with
    --detach in the background; stop it with `kfbox down`.
    """
    settings = Settings.load(host=host, port=port, home=home, db=db, token=token, container_runtime=containers,
                             allowed_hosts=",".join(allowed_host) if allowed_host else None, prometheus=prometheus,
                             data_plane=data_plane, ingress_port=ingress_port)
    if settings.prometheus:  # absent or misconfigured: one clear line now, not a failed start-up
        from kfbox.monitoring.prometheus import preflight

        preflight(settings)
    if settings.data_plane == "haproxy":
        from kfbox.serving.haproxy import preflight as haproxy_preflight

        haproxy_preflight(settings)
    if detach:
        start_detached(settings)
        return
    # the server's start-up makes ~100k objects that live as long as it does, and almost no garbage:
    # collecting while it imports was ~15% of its CPU to ready. serve() freezes them and collects again.
    gc.disable()
    from kfbox.server.runner import serve

    if settings.prometheus:  # announced once the server, then Prometheus, answer; the server does not wait for it
        threading.Thread(target=_announce_prometheus, args=(settings,), name="kfbox-prometheus-ready",
                         daemon=True).start()
    serve(settings, on_bound=_announce_start)


def _announce_start(settings: Settings) -> None:
    """The start line, once the port is bound: with ``--port 0`` it names the port picked. Plain text: rich's
    console would be imported for these lines."""
    typer.echo(f"kfbox starting on {settings.url} (home {settings.home})")
    elsewhere = other_machines(settings.host, settings.port)
    if elsewhere:
        typer.echo(f"from other machines: {elsewhere}, with the token (--token / KFBOX_TOKEN)")
    if settings.data_plane == "haproxy":
        from kfbox.serving.haproxy import configured_ingress_port

        port = configured_ingress_port(settings)
        where = local_url(settings.host, port) if port else "a free port"
        typer.echo(f"inference ingress (HAProxy) on {where}; its URL is ingress_url in {settings.server_record}")
    elif settings.data_plane == "handoff":
        typer.echo("connection hand-off on: this port passes a model's plain connections to its replicas "
                   "(kfbox serve get NAME says whether a service's do)")


def other_machines(host: str, port: int) -> str | None:
    """Where other machines reach a server bound to a wildcard, whose own URL names loopback; None for any other
    bind (its URL is the same from everywhere, or it is loopback only). The machine's name is one the Host check
    accepts (kfbox.server.hosts)."""
    if not is_wildcard(host):
        return None
    return f"http://{socket.gethostname()}:{port} or any address of this machine"


def _announce_prometheus(settings: Settings) -> None:
    """In the foreground server: print Prometheus's ready line once it answers queries, or why it does not."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while (url := _own_url(settings.home)) is None:
        if time.monotonic() > deadline:
            return  # the server did not start: its own output says why
        time.sleep(0.1)
    try:
        _show_prometheus(url, settings.token)
    except KfboxError as exc:  # the server runs on without it: say why, as the CLI says an error
        typer.echo(f"Error: {exc.message}", err=True)


def _own_url(home: Path) -> str | None:
    """This process's server URL once it answers ``/healthz``; None before."""
    record = read_record(home)
    if record is None or record["pid"] != os.getpid():
        return None
    url = str(record["url"])
    return url if _health(url) is not None else None


def _show_prometheus(url: str, token: str | None) -> None:
    """Wait for the server's Prometheus to answer queries (``kfbox monitoring up``'s wait) and print its one
    status line, in plain text: the foreground server prints through nothing else."""
    from kfbox.cli.monitoring import ready_line
    from kfbox.client import ApiClient

    api = ApiClient.connect(url, None, token, 60.0)
    try:
        typer.echo(ready_line(api, PROMETHEUS_READY_TIMEOUT_SECONDS))
    finally:
        api.close()


def start_detached(settings: Settings) -> None:
    existing = read_record(settings.home)
    if existing:
        cli_output.console.print(f"kfbox is already running at {existing['url']} (pid {existing['pid']}).")
        return
    log_path = settings.logs_dir / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "kfbox", "up", "--host", settings.host, "--port", str(settings.port),
            "--home", str(settings.home)]
    if settings.db:
        argv += ["--db", settings.db]
    argv += ["--containers", settings.container_runtime]
    if settings.prometheus:
        argv.append("--prometheus")
    argv += ["--data-plane", settings.data_plane, "--ingress-port", str(settings.ingress_port)]
    env = dict(os.environ)
    if settings.token:
        env["KFBOX_TOKEN"] = settings.token  # not on the command line, where `ps` would show it
    env["KFBOX_ALLOWED_HOSTS"] = settings.allowed_hosts
    with open(log_path, "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    url: str | None = None
    with cli_output.console.status("Starting kfbox..."):
        while url is None and time.monotonic() < deadline:
            if child.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise Unavailable("kfbox failed to start:\n" + "\n".join(tail) + f"\nFull log: {log_path}")
            record = read_record(settings.home)
            if record and _health(str(record["url"])) is not None:
                url = str(record["url"])
                cli_output.console.print(f"kfbox is running at [bold]{url}[/] (pid {record['pid']}). "
                              f"Logs: {log_path}. Stop it with: kfbox down")
                if elsewhere := other_machines(settings.host, int(record["port"])):
                    cli_output.console.print(f"From other machines: {elsewhere}, with the token (--token / KFBOX_TOKEN).", highlight=False)
            else:
                time.sleep(0.1)
    if url is None:
        child.kill()
        raise Unavailable(f"kfbox did not become ready within {READY_TIMEOUT_SECONDS:.0f}s; see {log_path}")
    if settings.prometheus:
        with cli_output.console.status("Waiting for Prometheus to be ready (it replays its data first)..."):
            _show_prometheus(url, settings.token)


def _health(url: str) -> dict[str, Any] | None:
    """The server's ``/healthz`` body (its extra fields, e.g. ``data_plane``); None when it is not healthy."""
    import httpx  # not at import: `kfbox up` in the foreground never calls this (~70 ms)

    try:
        reply = httpx.get(f"{url}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    try:
        body: dict[str, Any] = reply.json()
    except ValueError:
        return {}
    return body


def down(
    home: HomeOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a graceful stop before SIGKILL.")] = 20.0,
) -> None:
    """Stop the background server of this home (graceful: in-flight requests finish)."""
    home = _home(home)
    pid = _recorded_pid(home)
    if pid is None:
        cli_output.console.print(f"No kfbox server is running for home {home}.")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with cli_output.console.status(f"Stopping kfbox (pid {pid})..."):
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        cli_output.console.print(f"kfbox (pid {pid}) did not stop within {timeout:.0f}s and was killed.")
    else:
        cli_output.console.print(f"kfbox (pid {pid}) stopped.")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _recorded_pid(home: Path) -> int | None:
    record = read_record(home)
    if record:
        return int(record["pid"])
    try:
        pid = int((home / "kfbox.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _home(home: Path | None) -> Path:
    return Settings.load(home=home).home if home else default_home()


def status(home: HomeOption = None, output: OutputOption = Output.table) -> None:
    """Show whether the server of this home runs, where, and whether it is healthy."""
    home = _home(home)
    record = read_record(home)
    if record is None:
        if output is Output.json:
            print_json({"running": False, "home": str(home)})
        else:
            cli_output.console.print(f"kfbox is not running (home {home}). Start it with: kfbox up --detach")
        raise typer.Exit(1)
    health = _health(str(record["url"]))
    healthy = health is not None
    elsewhere = other_machines(str(record.get("host", "127.0.0.1")), int(record["port"]))
    info = {"running": True, "healthy": healthy, "url": record["url"],
            **({"other_machines": elsewhere} if elsewhere else {}), "pid": record["pid"], "home": str(home),
            "uptime_seconds": round(time.time() - float(record.get("started_at", time.time()))),
            **{k: v for k, v in (health or {}).items() if k not in ("status", "version")}}
    if output is Output.json:
        print_json(info)
    else:
        from kfbox.ui.formats import duration

        shown = {**info, "uptime_seconds": duration(1000 * info["uptime_seconds"])}
        print_pairs(None, [("uptime" if k == "uptime_seconds" else k.replace("_", " "), v) for k, v in shown.items()])
    if not healthy:
        raise typer.Exit(1)
