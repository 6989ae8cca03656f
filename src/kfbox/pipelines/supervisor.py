"""The run queue: starts workers with bounded concurrency, ingests their events, handles cancel.

One thread owns the loop: it applies each active run's new events to the database, notices
workers that exited, and starts PENDING runs while fewer than ``run_concurrency`` run. A
worker is a warm child (:mod:`kfbox.server.warm`; own process group), so cancel and shutdown
kill every task process with it; its channel wakes the loop when it appends an event or exits,
so nothing polls while runs are active (a slow safety pass still runs every second).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from kfbox.config import Settings
from kfbox.errors import KfboxError, NotFound
from kfbox.pipelines.environment import task_environment
from kfbox.pipelines.events import EventReader
from kfbox.pipelines.runs import ACTIVE, RunStore
from kfbox.pipelines.tables import Run
from kfbox.server import warm
from kfbox.server.processes import ChildProcess, kill_group

log = logging.getLogger(__name__)
POLL_SECONDS = 0.1
IDLE_SECONDS = 1.0
CANCEL_GRACE_SECONDS = 2.0
BATCH_SECONDS = 0.05
"""Events announced sooner than this after the last pass wait for the next one: a burst of finishing
tasks is one transaction, not one per event (each cost ~1 ms of server CPU: 4 a task)."""
SPARE_IDLE_SECONDS = 300.0
"""The spare worker (and its task server, ~160 MiB together) is started on the first use of the
pipelines API and retired after this long without any, so an idle server stays small."""


@dataclasses.dataclass
class _Active:
    child: ChildProcess
    reader: EventReader
    finished: bool = False


class Supervisor:
    def __init__(self, settings: Settings, store: RunStore, metrics: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.store = store
        self.finished = Counter("kfbox_pipeline_runs_finished", "Pipeline runs that ended, by final state.",
                                ["state"], registry=metrics)
        self.running = Gauge("kfbox_pipeline_runs_running", "Pipeline runs whose worker is alive.", registry=metrics)
        self.running.set_function(lambda: len(self.active))
        self.active: dict[str, _Active] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.dirty = True
        self.thread: threading.Thread | None = None
        self.spare: warm.WarmChild | None = None
        self.last_use = -SPARE_IDLE_SECONDS  # monotonic time of the last pipelines API use; none yet
        self.resume: set[str] = set()  # runs to continue from their events after a restart
        self.retrying: set[str] = set()  # runs to re-run except their SUCCEEDED tasks

    def run_dir(self, run_id: str) -> Path:
        return self.settings.runs_dir / run_id

    def start(self) -> None:
        reaped = reap_leftovers(self.settings.runs_dir)
        for leftover in self.settings.runs_dir.glob(".spare-*.log"):  # spare workers of an earlier server
            leftover.unlink(missing_ok=True)
        if reaped:
            log.warning("stopped %d process(es) an earlier kfbox server left running: %s", len(reaped), reaped)
        recovered = self.store.recover()
        for run_id, pid in recovered:
            if pid and _is_worker(pid, self.run_dir(run_id)):
                kill_group(pid, signal.SIGKILL)
            self.resume.add(run_id)
        if recovered:
            log.warning("%d run(s) interrupted by a server stop will resume from their finished tasks",
                        len(recovered))
        self.thread = threading.Thread(target=self._loop, name="kfbox-runs", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread:
            self.thread.join(timeout=10)
        with self.lock:
            active = dict(self.active)
            self.active.clear()
        if self.spare is not None:
            self.spare.stop(grace=0)
            self.spare.log_path.unlink(missing_ok=True)
        for run_id, entry in active.items():
            entry.child.stop(grace=CANCEL_GRACE_SECONDS)
            self._remove_containers(run_id)  # the run resumes at the next start: its tasks run again there
            self._ingest(run_id, entry)  # finished tasks are in the record: the next start resumes the run
            self.store.finish(run_id, "CANCELED", None, only_if=("CANCELING",))

    def submit(self) -> None:
        self.dirty = True
        self.touch()
        self.wake.set()  # start it now, not at the loop's next idle tick (up to a second later)

    def touch(self) -> None:
        """The pipelines API was used: a run may follow, so have a spare worker ready."""
        idle = time.monotonic() - self.last_use > SPARE_IDLE_SECONDS
        self.last_use = time.monotonic()
        if idle:
            self.wake.set()

    def cancel(self, run_id: str) -> None:
        """Terminate: a queued run is CANCELED at once; a running one CANCELING until its group is dead."""
        if self.store.finish(run_id, "CANCELED", None, only_if=("PENDING",)):
            return
        if not self.store.finish(run_id, "CANCELING", None, only_if=("RUNNING",)):
            return
        with self.lock:
            entry = self.active.get(run_id)
        if entry is not None:
            entry.child.stop(grace=CANCEL_GRACE_SECONDS)
            self._remove_containers(run_id)
        else:
            self.store.finish(run_id, "CANCELED", None, only_if=("CANCELING",))
        self.wake.set()

    def _remove_containers(self, run_id: str) -> None:
        """Its tasks' containers outlive the killed ``docker run`` processes: remove them (by the run's label)."""
        from kfbox.pipelines import containers

        with contextlib.suppress(NotFound):
            spec = self.store.get(run_id).pipeline_spec
            removed = containers.remove_containers_of(self.settings.container_runtime, run_id, spec)
            if removed:
                log.info("removed %d container(s) of cancelled run %s", len(removed), run_id)

    def _reap_containers(self) -> None:
        """Remove the containers of runs no worker runs any more: after ``kill -9`` of the server its workers
        died with it, but their containers are the engine's children and keep running. Done in the loop's
        thread before any run starts (a resumed run's new containers carry the same label); runs another
        kfbox home owns on the same engine are left alone."""
        if self.settings.container_runtime == "host":
            return
        if not self.store.any():  # no run, no container of one: no engine to ask (`docker info`, ~20 ms of CPU)
            return
        from kfbox.pipelines import containers

        runtime = containers.detect_runtime(self.settings.container_runtime)
        if runtime is None:
            return
        for run_id, ids in containers.labelled_containers(runtime).items():
            try:
                state = self.store.get(run_id).state
            except NotFound:
                continue
            if run_id in self.resume or state not in ACTIVE:
                log.warning("removing %d container(s) of run %s that an earlier server left running", len(ids),
                            run_id)
                containers.remove_containers(runtime, ids, f"run {run_id}")

    def retry(self, run_id: str) -> None:
        """Re-run a finished run's failed and skipped tasks, reusing the outputs of those that succeeded."""
        self.retrying.add(run_id)
        try:
            self.store.retry(run_id)
        except Exception:
            self.retrying.discard(run_id)
            raise
        self.submit()

    def forget(self, run_id: str) -> None:
        """Cancel if needed and remove the run's folder (logs, events); artifacts stay for the cache."""
        self.cancel(run_id)
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def _loop(self) -> None:
        try:
            self._reap_containers()
        except Exception:  # a broken engine must not stop the queue
            log.exception("looking for containers an earlier server left failed")
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self._poll()
                if self.dirty:
                    self.dirty = False
                    self._start_pending()
                self._keep_spare()
            except Exception:  # the loop must survive a database hiccup; try the queue again next time
                self.dirty = True
                log.exception("run supervisor iteration failed")
            # a worker with a channel wakes the loop itself (an event, its exit); others are polled
            with self.lock:
                polled = any(not isinstance(entry.child, warm.WarmChild) for entry in self.active.values())
            self.wake.wait(POLL_SECONDS if polled else IDLE_SECONDS)
            self.wake.clear()
            rest = BATCH_SECONDS - (time.monotonic() - started)
            if rest > 0 and not self.dirty:  # a submitted run starts at once
                self.stopping.wait(rest)

    def _poll(self) -> None:
        with self.lock:
            entries = list(self.active.items())
        for run_id, entry in entries:
            exited = not entry.child.alive
            self._ingest(run_id, entry)
            if not exited:
                continue
            self._ingest(run_id, entry)
            code = entry.child.returncode
            self.store.finish(run_id, "CANCELED", None, only_if=("CANCELING",))
            if not entry.finished:  # a worker that said its run ended must not fail it: the run may be retried by now
                self.store.finish(run_id, "FAILED", f"The run's worker process exited with code {code} before "
                                  f"finishing; see {entry.child.log_path}.", only_if=("RUNNING", "PENDING"))
            with self.lock:
                self.active.pop(run_id, None)
            with contextlib.suppress(NotFound):  # deleted while it ran
                self.finished.labels(self.store.get(run_id).state).inc()
            self.dirty = True

    def _ingest(self, run_id: str, entry: _Active) -> None:
        events = entry.reader.read()
        entry.finished = entry.finished or any(event.get("event") == "run_finished" for event in events)
        try:
            self.store.apply_all(run_id, events)
        except Exception:  # one bad event must not cost the batch: apply them one by one
            log.exception("applying %d events of run %s at once failed; applying them one by one", len(events), run_id)
            for event in events:
                try:
                    self.store.apply(run_id, event)
                except Exception:
                    log.exception("event %s of run %s could not be applied", event.get("event"), run_id)

    def _start_pending(self) -> None:
        while len(self.active) < max(1, self.settings.run_concurrency) and not self.stopping.is_set():
            run = self.store.next_pending()
            if run is None:
                return
            self._launch(run)

    def _launch(self, run: Run) -> None:
        run_dir = self.run_dir(run.id)
        (run_dir / "tasks").mkdir(parents=True, exist_ok=True)
        job = {"run_id": run.id, "pipeline_spec": run.pipeline_spec, "parameters": run.parameters,
               "artifacts_root": str(self.settings.artifacts_dir), "cache_root": str(self.settings.home / "cache"),
               "pvc_root": str(self.settings.pvc_dir), "venvs_dir": str(self.settings.venvs_dir),
               "fork_tasks": self.settings.pipelines_fork_tasks,
               "logs_dir": str(run_dir / "tasks"), "display_name": run.display_name,
               "created_at": _utc(run.created_ms), "scheduled_at": _utc(run.scheduled_ms or run.created_ms),
               "pipeline_root": run.pipeline_root or None, "container_runtime": self.settings.container_runtime,
               # twice the cores, at least 4: tasks wait on I/O and HTTP too (iris: 3 train+register iterations at once)
               "task_concurrency": self.settings.task_concurrency or max(4, 2 * (os.cpu_count() or 1)),
               "importer": {"s3_endpoint": self.settings.s3_endpoint,  # keys reach the worker in its env only
                            "importer_max_bytes": self.settings.importer_max_bytes}}
        if run.id in self.resume:
            self.resume.discard(run.id)
            if not (run_dir / "events.jsonl").exists():
                self.store.fail_unresumable(run.id, f"its events file {run_dir / 'events.jsonl'} is gone")
                return
            job["resume"] = True
        retry = run.id in self.retrying
        if retry:
            self.retrying.discard(run.id)
            job["retry"] = (run_dir / "events.jsonl").exists()
        try:
            self._write_secret_env(run, run_dir)
        except (KfboxError, OSError) as exc:
            self.store.finish(run.id, "FAILED", str(exc), only_if=("PENDING",))
            return
        (run_dir / "job.json").write_text(json.dumps(job))
        (run_dir / "events.jsonl").touch()
        if not self.store.mark_started(run.id, 0):
            return
        reader = EventReader(run_dir / "events.jsonl")
        if retry:  # the earlier worker's events were applied when it finished; the retry's come after them,
            # so the offset is taken before the worker starts: a warm worker writes its first events at once
            reader.offset = (run_dir / "events.jsonl").stat().st_size
        try:
            child = self._take_spare(run_dir) or self._spawn_worker(run_dir)
        except OSError as exc:
            self.store.finish(run.id, "FAILED", f"Could not start the run's worker: {exc}")
            return
        self.store.set_pid(run.id, child.pid)
        with self.lock:
            self.active[run.id] = _Active(child, reader)
        if isinstance(child, warm.WarmChild):
            child.events(lambda _event: self.wake.set(), lambda: self._exited(child))
        if self.store.get(run.id).state not in ACTIVE:  # cancelled between mark and spawn
            child.stop(grace=0)

    def _exited(self, child: ChildProcess) -> None:
        """A worker's channel ended: wake the loop once the process is reapable (its exit ends the
        channel a moment before the kernel lets it be waited for)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=5)
        self.wake.set()

    def _write_secret_env(self, run: Run, run_dir: Path) -> None:
        """The secrets and config maps a run may use (``use_*_as_env``), in a 0600 file its worker reads and
        removes at start: the worker never opens the database, and values never reach job.json or a log.

        Names are the constants, the run's parameters and defaults (kfbox.pipelines.secrets.referenced_names);
        where a name comes from a task's output, every entry of that kind (a pod may name any secret of its
        namespace, too).
        """
        from kfbox.errors import NotFound as Missing
        from kfbox.pipelines import secrets
        from kfbox.pipelines import spec as specs
        from kfbox.pipelines.secret_values import ENV_FIELDS, VOLUME_FIELDS

        kubernetes = specs.platform_part(run.pipeline_spec).get("platforms", {}).get("kubernetes", {})
        configs = [c for c in kubernetes.get("deploymentSpec", {}).get("executors", {}).values() if c]
        if not any({"secretAsEnv", "configMapAsEnv", "secretAsVolume", "configMapAsVolume"} & set(c)
                   for c in configs):
            return
        store = secrets.SecretStore.from_settings(self.store.db, self.settings)
        names = secrets.referenced_names(run.pipeline_spec, run.parameters)
        for kind, (section, field, _key) in ENV_FIELDS.items():
            if any("taskOutputParameter" in (e.get(f"{field}Parameter") or {})
                   for c in configs for e in [*(c.get(section) or []),
                                              *(c.get(VOLUME_FIELDS[kind][0]) or [])]):
                names[kind] |= {entry.name for entry in store.list(kind)}
        values: dict[str, dict[str, dict[str, str]]] = {}
        for kind, wanted in names.items():
            for name in sorted(wanted):
                with contextlib.suppress(Missing):  # a missing one fails the task that needs it, saying so
                    values.setdefault(kind, {})[name] = dict(store.get(kind, name))
        path = run_dir / "secret-env.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(values, f)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **task_environment(self.settings), "PYTHONUNBUFFERED": "1"}

    def _spawn_worker(self, run_dir: Path) -> ChildProcess:
        argv = [sys.executable, "-m", "kfbox.pipelines.worker", str(run_dir)]
        log_path = run_dir / "worker.log"
        if warm.supported():  # a channel all the same: its events wake the loop
            return warm.spawn(argv, log_path=log_path, env=self._env(), cwd=run_dir)
        return ChildProcess.spawn(argv, log_path=log_path, env=self._env(), cwd=run_dir)

    def _keep_spare(self) -> None:
        """One worker with kfp already imported, waiting for the next run.

        Respawned as soon as one is taken: its import costs the running tasks a little CPU, but the
        next run (a cached rerun, a queue of runs) then starts at once instead of after the import.
        Only while pipelines are in use (:data:`SPARE_IDLE_SECONDS`).
        It works in the runs folder (where an earlier server's leftovers are found) and logs to
        ``.spare-*.log`` there until a run is handed over.
        """
        if not self.settings.pipelines_spare_worker or not warm.supported():
            return
        if not self.active and time.monotonic() - self.last_use > SPARE_IDLE_SECONDS:
            if self.spare is not None:  # nobody used pipelines for a while: give the memory back
                self.spare.stop(grace=0)
                self.spare.log_path.unlink(missing_ok=True)
                self.spare = None
            return
        if self.spare is not None and self.spare.alive:
            return
        if self.spare is not None:  # it died: reap it, keep nothing of it
            self.spare.stop(grace=0)
            self.spare.log_path.unlink(missing_ok=True)
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        self.spare = warm.spawn([sys.executable, "-m", "kfbox.pipelines.worker", "--spare"],
                                log_path=self.settings.runs_dir / f".spare-{uuid.uuid4().hex[:8]}.log",
                                env=self._env(), cwd=self.settings.runs_dir)

    def _take_spare(self, run_dir: Path) -> ChildProcess | None:
        spare, self.spare = self.spare, None
        if spare is None or not spare.alive:
            return None
        if not spare.assign({"run_dir": str(run_dir)}):
            spare.stop(grace=0)
            return None
        spare.log_path.unlink(missing_ok=True)  # the worker now writes to the run's worker.log
        spare.log_path = run_dir / "worker.log"
        return spare


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def reap_leftovers(runs_dir: Path) -> list[int]:
    """Kill the process groups of run workers and task servers working in ``runs_dir`` (an earlier server's).

    Workers and task servers die with their parent (a parent-death signal), so this only finds
    processes from before that, or ones whose parent was stopped in a way the signal misses.
    """
    found: list[int] = []
    if not Path("/proc").is_dir():  # macOS: no /proc to search; the warm channels' end of file stops them
        return found
    root = runs_dir.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"kfbox.pipelines.worker" not in cmdline and b"kfbox.pipelines.forkserver" not in cmdline:
                continue
            cwd = Path(os.readlink(entry / "cwd")).resolve()
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            pid = int(entry.name)
            with contextlib.suppress(OSError):
                kill_group(os.getpgid(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            found.append(pid)
    return found


def _is_worker(pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` is still this run's worker (and not a recycled pid): a worker working in ``run_dir``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return b"kfbox.pipelines.worker" in cmdline and Path(cwd).resolve() == run_dir.resolve()
