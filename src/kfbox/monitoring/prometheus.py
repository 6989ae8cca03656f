"""The local Prometheus: Debian's ``prometheus`` binary as a child of the server, bound to loopback.

Its config is generated into ``<home>/monitoring/prometheus.yml``: two jobs found through
kfbox's HTTP service discovery (the server, and every model replica), the alerting rules
shipped in :mod:`kfbox.monitoring.rules`, data in ``<home>/monitoring/data`` kept for the
retention setting. The child has its own process group and is stopped with the server.

Example::

    prom = LocalPrometheus(settings)
    prom.start()          # raises Unavailable with the install command when the binary is absent
    prom.probe()          # False while it replays its data (its API answers 503), True once /-/ready says so
    prom.status()         # {"running": True, "ready": True, "url": "http://127.0.0.1:9091", ...}
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from kfbox.config import Settings
from kfbox.durations import parse_duration
from kfbox.errors import InvalidInput, Unavailable
from kfbox.monitoring.targets import JOBS, scrape_address
from kfbox.server.processes import ChildProcess

INSTALL_HINT = "Install it with: sudo apt-get install prometheus (Debian/Ubuntu), or put a prometheus binary on PATH."
RULE_FILE = "kfbox-alerts.yaml"
SD_REFRESH_SECONDS = 5
"""Shortest refresh of the service-discovery target lists (the scrape interval when it is longer)."""
PROMETHEUS_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")
"""Prometheus's own duration syntax (``7d``, ``2w``, ``1y6w``): Go's, as :mod:`kfbox.durations` reads, has no days."""


def rules_text(alert_for: str = "") -> str:
    """The alerting rules shipped with kfbox (Prometheus rule-file YAML).

    ``alert_for`` (e.g. ``"5s"``) replaces every rule's ``for:``, so a test or a demo sees an
    alert fire in seconds rather than minutes; empty keeps the shipped text as is.
    """
    text = resources.files("kfbox.monitoring").joinpath("rules", RULE_FILE).read_text()
    if not alert_for:
        return text
    import yaml  # here, not at import: a server without --prometheus never writes YAML (~20 ms at start)

    rules = yaml.safe_load(text)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = alert_for
    return yaml.safe_dump(rules, sort_keys=False, allow_unicode=True)


def preflight(settings: Settings) -> str:
    """The prometheus binary's path; a clear error when it is absent or would refuse the settings.

    ``kfbox up --prometheus`` calls it before the server starts, so the message is one line, not a
    failed start-up hook's traceback.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise Unavailable(f"Prometheus is not installed (no 'prometheus' on PATH). {INSTALL_HINT}")
    retention = settings.prometheus_retention
    if not retention or not PROMETHEUS_DURATION.fullmatch(retention):
        raise InvalidInput(f"Prometheus retention {retention!r} is not a Prometheus duration; set "
                           "KFBOX_PROMETHEUS_RETENTION to e.g. '12h', '7d' or '2w'.")
    parse_duration(settings.prometheus_scrape_interval, "KFBOX_PROMETHEUS_SCRAPE_INTERVAL")
    return binary


class LocalPrometheus:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = settings.home / "monitoring"
        self.child: ChildProcess | None = None
        self.port = 0
        self._ready_child: ChildProcess | None = None
        """The child that has answered ``/-/ready``: once ready it stays so, and is not probed again."""
        self._lock = threading.Lock()
        self._log_start = 0

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.child is not None and self.child.alive else None

    def start(self) -> dict[str, Any]:
        """Start Prometheus if it is not running; returns :meth:`status` at once (``ready`` comes later: poll
        :meth:`probe`, as ``kfbox monitoring up`` does through ``GET /monitoring/prometheus``)."""
        with self._lock:
            if self.child is not None and self.child.alive:
                return self.status()
            binary = preflight(self.settings)
            self.port = self.settings.prometheus_port or _free_port()
            config = self.write_config()
            data = self.folder / "data"
            data.mkdir(parents=True, exist_ok=True)
            argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                    f"--storage.tsdb.retention.time={self.settings.prometheus_retention}",
                    f"--web.listen-address=127.0.0.1:{self.port}"]  # no --web.enable-lifecycle: no remote quit
            log = self.settings.logs_dir / "prometheus.log"
            self._log_start = log.stat().st_size if log.exists() else 0  # the log is appended to: this run's part
            self.child = ChildProcess.spawn(argv, log_path=log, die_with_parent=True)
            return self.status()

    def stop(self) -> dict[str, Any]:
        with self._lock:
            if self.child is not None:
                self.child.stop(grace=10)
                self.child = None
            return self.status()

    def status(self) -> dict[str, Any]:
        """Cheap (no request to Prometheus): ``ready`` is what :meth:`probe` last found; ``exit_code`` is set
        when the child exited on its own (a bad flag, a locked data folder, a port in use), with the reason its
        log gave last (``error``) and the ``log`` to read."""
        child = self.child
        running = child is not None and child.alive
        exited = child is not None and not running
        log = self.settings.logs_dir / "prometheus.log"
        return {"running": running, "ready": running and self._ready_child is child, "url": self.url,
                "pid": child.pid if running and child else None,
                "exit_code": child.returncode if exited and child else None,
                "error": last_error(log, self._log_start) if exited else None,
                "installed": shutil.which("prometheus") is not None, "data": str(self.folder / "data"),
                "retention": self.settings.prometheus_retention, "config": str(self.folder / "prometheus.yml"),
                "log": str(log),
                "scrape_interval": self.settings.prometheus_scrape_interval}

    def probe(self) -> bool:
        """Whether Prometheus answers ``/-/ready``: a restarted one answers 503 on its API while it replays
        its data, so a query right after :meth:`start` fails. Blocks up to 2 s: call it off the event loop."""
        import httpx  # lazily: ~70 ms of CPU at server start otherwise

        child = self.child
        if child is None or not child.alive:
            return False
        if self._ready_child is child:
            return True
        try:
            ready = httpx.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
        if ready:
            self._ready_child = child
        return ready

    def write_config(self) -> Path:
        """Write prometheus.yml, the rules and (with a server token) the token file; returns the config path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / RULE_FILE).write_text(rules_text(self.settings.prometheus_alert_for))
        server = scrape_address(self.settings.host, self.settings.port)
        auth: dict[str, Any] = {}
        if self.settings.token:
            token_file = self.folder / "token"
            token_file.touch(mode=0o600)
            token_file.chmod(0o600)
            token_file.write_text(self.settings.token)
            # type stated: a shared (anchored) authorization block reached http_sd without the default
            # "Bearer" (Prometheus 2.42 sent "Authorization: <token>" and discovery got 401s)
            auth = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
        interval = self.settings.prometheus_scrape_interval
        # the target list changes when a replica starts or stops: refreshing it at every 1 s scrape
        # cost the server as much CPU as the scrapes themselves; 5 s at most finds a new replica soon enough
        refresh = interval if parse_duration(interval, "scrape interval") >= SD_REFRESH_SECONDS \
            else f"{SD_REFRESH_SECONDS}s"
        jobs = []
        for job in JOBS:
            sd = {"url": f"http://{server}/monitoring/sd?job={job}", "refresh_interval": refresh, **copy.deepcopy(auth)}
            jobs.append({"job_name": job, "http_sd_configs": [sd], **(copy.deepcopy(auth) if job == "kfbox" else {})})
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                             "external_labels": {"kfbox_home": str(self.settings.home)}},
                  "rule_files": [str(self.folder / RULE_FILE)], "scrape_configs": jobs}
        import yaml

        path = self.folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_LOGFMT_VALUE = r'="((?:[^"\\]|\\.)*)"'


def last_error(log: Path, start: int = 0, tail_bytes: int = 65536) -> str | None:
    """The reason on the last ``level=error`` line of Prometheus's log after byte ``start`` (logfmt: its ``err``,
    else its ``msg``), e.g. ``listen tcp 127.0.0.1:9090: bind: address already in use``; None when there is none."""
    try:
        with log.open("rb") as f:
            f.seek(max(start, f.seek(0, 2) - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if re.search(r"\blevel=error\b", line, re.IGNORECASE):
            found = re.search(r"\berr" + _LOGFMT_VALUE, line) or re.search(r"\bmsg" + _LOGFMT_VALUE, line)
            return found.group(1) if found else line.strip()
    return None
