"""Background admin jobs: batch reloads and retrainings run as ``graphrec`` CLI subprocesses.

The API process never loads data or trains itself: a job is a list of ``graphrec ...`` command
lines run one after the other in a worker thread (``python -m api.cli.main ...`` with the API's
environment). Its state, progress (finished steps / steps), commands, the tail of its output and
its result live in a job store: :class:`graph.jobs_store.JobStore` (``(:Job)`` nodes in Neo4j) in
the API, so jobs outlive the process, and a job a dead process left running shows as
``interrupted``. One job runs at a time; more are queued.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from graph.jobs_store import JobRecord
from graphrec.clock import utc_now_iso
from graphrec.errors import GraphrecError, InvalidArgumentError, NotFoundError

log = logging.getLogger(__name__)

_ARG_RE = re.compile(r"^[A-Za-z0-9_.,:=/@+-]{1,300}$")
LOG_LINES = 60
FLUSH_S = 1.0
"""A running job's output reaches the store at most this often (and at every step's end)."""


def check_args(args: list[str]) -> list[str]:
    """Reject arguments with characters a CLI option never needs (no shell is involved anyway)."""
    bad = [a for a in args if not _ARG_RE.match(a)]
    if bad:
        raise InvalidArgumentError(f"invalid argument(s): {bad[:3]!r}")
    return args


Step = list[str] | Callable[[], list[str] | None]


class Store(Protocol):
    """Where job records live (:class:`graph.jobs_store.JobStore` or :class:`MemoryJobStore`)."""

    def save(self, job: JobRecord) -> None: ...  # noqa: D102
    def get(self, job_id: str, owner: str | None = None) -> JobRecord: ...  # noqa: D102
    def list(self, owner: str | None = None, state: str | None = None, limit: int = 50) -> list[JobRecord]: ...  # noqa: D102
    def interrupt_stale(self, owner: str, now_iso: str) -> list[str]: ...  # noqa: D102


class MemoryJobStore:
    """A job store in this process's memory (for tools and tests without Neo4j)."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}

    def save(self, job: JobRecord) -> None:
        """Keep a copy."""
        self.jobs[job.id] = job.model_copy(deep=True)

    def get(self, job_id: str, owner: str | None = None) -> JobRecord:
        """The job (raises :class:`NotFoundError`)."""
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFoundError(f"unknown job {job_id!r}") from None

    def list(self, owner: str | None = None, state: str | None = None, limit: int = 50) -> list[JobRecord]:
        """Newest first."""
        jobs = sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True)
        return [j for j in jobs if state is None or j.state == state][:limit]

    def interrupt_stale(self, owner: str, now_iso: str) -> list[str]:
        """Nothing outlives the process here."""
        return []


class JobRunner:
    """Runs jobs one at a time in a daemon thread; every change is saved to ``store``.

    Args:
        store (Store, optional): Where the job records live (default: :class:`MemoryJobStore`).
        env (dict, optional): Environment of the subprocesses (default: this process's).
        python (str, optional): Interpreter (default: ``sys.executable``).
    """

    def __init__(self, store: Store | None = None, env: dict[str, str] | None = None, python: str | None = None) -> None:
        self.store: Store = store if store is not None else MemoryJobStore()
        self.owner = uuid.uuid4().hex
        self.env = dict(env if env is not None else os.environ)
        self.python = python or sys.executable
        self._queue: queue.Queue[tuple[JobRecord, list[Step]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._current: subprocess.Popen[str] | None = None
        self._stopping = False

    def recover(self) -> list[str]:
        """Mark the jobs a dead API process left queued or running ``interrupted`` (at start-up)."""
        try:
            ids = self.store.interrupt_stale(self.owner, utc_now_iso())
        except GraphrecError as e:
            log.warning("could not check for interrupted jobs (%s)", e)
            return []
        if ids:
            log.warning("jobs interrupted by the previous API process: %s", ", ".join(ids))
        return ids

    def submit(self, kind: Literal["reload", "train"], steps: list[Step]) -> JobRecord:
        """Save a queued job and queue it (raises the store's errors, e.g. 503 while Neo4j is down)."""
        now = utc_now_iso()
        job = JobRecord(id=uuid.uuid4().hex[:12], kind=kind, steps=len(steps), created_at=now, updated_at=now,
                        heartbeat=time.time(), owner=self.owner)
        self.store.save(job)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._worker, name="graphrec-jobs", daemon=True)
            self._thread.start()
        self._queue.put((job, steps))
        return job

    def get(self, job_id: str) -> JobRecord:
        """The job ``job_id`` (raises :class:`NotFoundError`)."""
        return self.store.get(job_id, owner=self.owner)

    def list(self, state: str | None = None, limit: int = 50) -> list[JobRecord]:
        """The newest jobs, newest first."""
        return self.store.list(owner=self.owner, state=state, limit=limit)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job finished (tests and CLI use)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while job.state in ("queued", "running"):
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
            job = self.get(job_id)
        return job

    def shutdown(self) -> None:
        """Stop the worker; a running subprocess is terminated."""
        self._stopping = True
        self._queue.put(None)
        if self._current is not None and self._current.poll() is None:
            self._current.terminate()

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping:
                return
            self._run(*item)

    def _save(self, job: JobRecord) -> None:
        job.updated_at, job.heartbeat = utc_now_iso(), time.time()
        try:
            self.store.save(job)
        except GraphrecError as e:  # the store is down for a moment: the next save carries everything
            log.warning("could not save job %s (%s)", job.id, e)

    def _run(self, job: JobRecord, steps: list[Step]) -> None:
        job.state, job.started_at = "running", utc_now_iso()
        lines: deque[str] = deque(maxlen=LOG_LINES)

        def note(line: str) -> None:
            lines.append(line)
            job.messages = list(lines)

        self._save(job)
        rc = 0
        try:
            for n, step in enumerate(steps):
                job.step = n + 1
                args = step() if callable(step) else step
                if args is None:
                    job.progress = (n + 1) / len(steps)
                    continue
                cmd = [self.python, "-m", "api.cli.main", *args]
                job.commands = [*job.commands, ["graphrec", *args]]
                note("$ graphrec " + " ".join(args))
                self._save(job)
                self._current = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
                                                 stdin=subprocess.DEVNULL)
                assert self._current.stdout is not None
                last = time.monotonic()
                for line in self._current.stdout:
                    note(line.rstrip()[-500:])
                    if time.monotonic() - last > FLUSH_S:
                        self._save(job)
                        last = time.monotonic()
                rc = self._current.wait()
                if rc != 0:
                    job.error = f"graphrec {args[0]} exited with status {rc}"
                    break
                job.progress = (n + 1) / len(steps)
        except Exception as e:  # noqa: BLE001 - a job failure must never kill the worker
            log.exception("job %s failed", job.id)
            from api.errors import describe

            job.error = describe(e)[2]  # no driver text: the log has the cause
            note(f"error: {job.error}")
            rc = rc or 1
        job.returncode = rc
        job.state = "succeeded" if rc == 0 else "failed"
        if rc == 0:
            job.progress = 1.0
        job.finished_at = utc_now_iso()
        self._save(job)
