"""Admin jobs kept in Neo4j, so that they outlive the API process that ran them::

    (:Job {id, dataset, kind, state, progress, step, steps, commands, messages, created_at, started_at,
           finished_at, updated_at, heartbeat, owner, returncode, error})

``commands`` are JSON strings (one ``graphrec ...`` argument list each: Neo4j has no list of lists);
``messages`` are the last lines of the output. ``owner`` is the id of the API process running the job
and ``heartbeat`` the Unix time it last wrote it: a job left ``queued``/``running`` by a process whose
heartbeat is older than ``stale_s`` is ``interrupted`` (the process died).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import neo4j
from pydantic import BaseModel, Field

from graph.connection import read, write
from graphrec.errors import NotFoundError

JOB = "Job"

JobState = Literal["queued", "running", "succeeded", "failed", "interrupted"]
ACTIVE_STATES: tuple[str, ...] = ("queued", "running")

Q_JOB_CONSTRAINT = "CREATE CONSTRAINT graphrec_job_id IF NOT EXISTS FOR (j:`Job`) REQUIRE j.id IS UNIQUE"

Q_SAVE_JOB = """
MERGE (j:`Job` {id: $id})
SET j += $props
"""

Q_GET_JOB = "MATCH (j:`Job` {id: $id}) RETURN j {.*} AS j"

Q_LIST_JOBS = """
MATCH (j:`Job`)
WHERE ($dataset IS NULL OR j.dataset = $dataset) AND ($state IS NULL OR j.state = $state)
RETURN j {.*} AS j
ORDER BY j.created_at DESC, j.id
LIMIT $limit
"""

Q_INTERRUPT_STALE = """
MATCH (j:`Job`)
WHERE ($dataset IS NULL OR j.dataset = $dataset) AND j.state IN $active AND coalesce(j.owner, '') <> $owner AND coalesce(j.heartbeat, 0.0) < $before
SET j.state = 'interrupted', j.finished_at = $now_iso, j.updated_at = $now_iso,
    j.error = 'the API process running this job stopped before it finished'
RETURN j.id AS id
"""


class JobRecord(BaseModel):
    """One admin job as stored."""

    id: str
    kind: str
    dataset: str | None = Field(None, description="Dataset of the API that ran it.")
    state: JobState = "queued"
    progress: float = Field(0.0, ge=0.0, le=1.0, description="Finished steps / steps.")
    step: int = 0
    steps: int = 0
    commands: list[list[str]] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    heartbeat: float | None = None
    owner: str | None = None
    returncode: int | None = None
    error: str | None = None

    def to_props(self) -> dict[str, Any]:
        """Neo4j properties (commands as JSON strings)."""
        props = self.model_dump()
        props["commands"] = [json.dumps(c) for c in self.commands]
        return props

    @classmethod
    def from_props(cls, props: dict[str, Any]) -> JobRecord:
        """From stored properties."""
        data = dict(props)
        data["commands"] = [json.loads(c) for c in data.get("commands") or []]
        data["messages"] = list(data.get("messages") or [])
        return cls.model_validate(data)


class JobStore:
    """Reads and writes ``(:Job)`` nodes.

    Args:
        driver: A callable returning the driver (the API creates its driver lazily), or a driver.
        database (str, optional): Database name (default: ``"neo4j"``).
        stale_s (float, optional): A queued or running job whose owner has not written for this long
            is shown as ``interrupted`` (default: 30).
        dataset (str, optional): Only the jobs of this dataset are listed and recovered (default: all).
    """

    def __init__(self, driver: Any, database: str = "neo4j", stale_s: float = 30.0, dataset: str | None = None) -> None:
        self._driver = driver
        self.dataset = dataset
        self.database = database
        self.stale_s = stale_s
        self._schema_done = False

    @property
    def driver(self) -> neo4j.Driver:
        """The driver."""
        return self._driver() if callable(self._driver) else self._driver

    def _schema(self) -> None:
        if not self._schema_done:
            write(self.driver, Q_JOB_CONSTRAINT, database=self.database)
            self._schema_done = True

    def save(self, job: JobRecord) -> None:
        """Create or update the job's node (stamped with the store's dataset)."""
        if job.dataset is None and self.dataset is not None:
            job.dataset = self.dataset
        self._schema()
        write(self.driver, Q_SAVE_JOB, {"id": job.id, "props": job.to_props()}, self.database)

    def _view(self, props: dict[str, Any], owner: str | None) -> JobRecord:
        job = JobRecord.from_props(props)
        if job.state in ACTIVE_STATES and job.owner != owner and (job.heartbeat or 0.0) < time.time() - self.stale_s:
            job = job.model_copy(update={"state": "interrupted",
                                         "error": "the API process running this job stopped before it finished"})
        return job

    def get(self, job_id: str, owner: str | None = None) -> JobRecord:
        """The job ``job_id`` (raises :class:`NotFoundError`); ``owner``: the caller's process id."""
        rows = read(self.driver, Q_GET_JOB, {"id": job_id}, self.database)
        if not rows:
            raise NotFoundError(f"unknown job {job_id!r}")
        return self._view(rows[0]["j"], owner)

    def list(self, owner: str | None = None, state: str | None = None, limit: int = 50) -> list[JobRecord]:
        """The newest ``limit`` jobs (optionally in ``state``), newest first."""
        rows = read(self.driver, Q_LIST_JOBS, {"dataset": self.dataset, "state": state, "limit": int(limit)}, self.database)
        jobs = [self._view(r["j"], owner) for r in rows]
        return [j for j in jobs if state is None or j.state == state]

    def interrupt_stale(self, owner: str, now_iso: str) -> list[str]:
        """Mark the jobs that dead processes left queued or running ``interrupted``; their ids."""
        self._schema()
        rows = write_rows(self.driver, Q_INTERRUPT_STALE, {"dataset": self.dataset, "active": list(ACTIVE_STATES), "owner": owner,
                                                            "before": time.time() - self.stale_s, "now_iso": now_iso}, self.database)
        return [r["id"] for r in rows]


def write_rows(driver: neo4j.Driver, query: str, params: dict[str, Any], database: str) -> list[Any]:
    """A write query (managed, retried on transient errors) returning its records."""
    from neo4j import RoutingControl
    from neo4j import exceptions as neo4j_exc

    from graph.connection import translate_error

    try:
        records, _, _ = driver.execute_query(query, params, database_=database, routing_=RoutingControl.WRITE)
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError, OSError) as e:
        raise translate_error(e) from e
    return list(records)
