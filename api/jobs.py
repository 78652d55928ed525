"""Background admin jobs: batch reloads and retrainings run as ``graphrec`` CLI subprocesses.

The API process never loads data or trains itself: a job is a list of ``graphrec ...`` command
lines run one after the other in a worker thread (``python -m api.cli.main ...`` with the API's
environment); its state, return code and the tail of its output are kept in memory. One job runs
at a time; more are queued.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from graphrec.clock import utc_now_iso
from graphrec.errors import InvalidArgumentError, NotFoundError

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed"]
_ARG_RE = re.compile(r"^[A-Za-z0-9_.,:=/@+-]{1,300}$")
LOG_LINES = 60


def check_args(args: list[str]) -> list[str]:
    """Reject arguments with characters a CLI option never needs (no shell is involved anyway)."""
    bad = [a for a in args if not _ARG_RE.match(a)]
    if bad:
        raise InvalidArgumentError(f"invalid argument(s): {bad[:3]!r}")
    return args


@dataclass
class Job:
    """One background job: ``steps`` are ``graphrec`` argument lists, or callables producing one lazily."""

    id: str
    kind: Literal["reload", "train"]
    steps: list[list[str] | Callable[[], list[str] | None]]
    state: JobState = "queued"
    commands: list[list[str]] = field(default_factory=list)
    created_at: str = field(default_factory=utc_now_iso)
    started_at: str | None = None
    finished_at: str | None = None
    returncode: int | None = None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))

    def as_dict(self) -> dict[str, object]:
        """JSON-able view (for :class:`api.schemas.JobOut`)."""
        return {"id": self.id, "kind": self.kind, "state": self.state, "commands": self.commands, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at, "returncode": self.returncode,
                "log_tail": "\n".join(self.log)}


class JobRunner:
    """Runs jobs one at a time in a daemon thread.

    Args:
        env (dict, optional): Environment of the subprocesses (default: this process's).
        python (str, optional): Interpreter (default: ``sys.executable``).
    """

    def __init__(self, env: dict[str, str] | None = None, python: str | None = None) -> None:
        self.env = dict(env if env is not None else os.environ)
        self.python = python or sys.executable
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._current: subprocess.Popen[str] | None = None
        self._stopping = False

    def submit(self, kind: Literal["reload", "train"], steps: list[list[str] | Callable[[], list[str] | None]]) -> Job:
        """Queue a job and return it."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, steps=steps)
        self.jobs[job.id] = job
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._worker, name="graphrec-jobs", daemon=True)
            self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (raises :class:`NotFoundError`)."""
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFoundError(f"unknown job {job_id!r}") from None

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finished (tests and CLI use)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while job.state in ("queued", "running"):
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return job

    def shutdown(self) -> None:
        """Stop the worker; a running subprocess is terminated."""
        self._stopping = True
        self._queue.put(None)
        if self._current is not None and self._current.poll() is None:
            self._current.terminate()

    def _worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._stopping:
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        job.state, job.started_at = "running", utc_now_iso()
        rc = 0
        try:
            for step in job.steps:
                args = step() if callable(step) else step
                if args is None:
                    continue
                cmd = [self.python, "-m", "api.cli.main", *args]
                job.commands.append(["graphrec", *args])
                job.log.append("$ graphrec " + " ".join(args))
                self._current = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env,
                                                 stdin=subprocess.DEVNULL)
                assert self._current.stdout is not None
                for line in self._current.stdout:
                    job.log.append(line.rstrip()[-500:])
                rc = self._current.wait()
                if rc != 0:
                    break
        except Exception as e:  # noqa: BLE001 - a job failure must never kill the worker
            log.exception("job %s failed", job.id)
            job.log.append(f"error: {e}")
            rc = rc or 1
        job.returncode = rc
        job.state = "succeeded" if rc == 0 else "failed"
        job.finished_at = utc_now_iso()
