"""A replace that fails half way (bad batch, killed process, Neo4j going away) leaves the previous graph intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import graph.load as load_module
from graph.connection import read
from graph.datasets import acquire_lease, active_generation, cleanup, drop_dataset, list_datasets, release_lease
from graph.load import LoadOptions, load_frames
from graph.stats import dataset_counts
from graphrec.errors import LoadError, Neo4jUnavailableError
from loaders.csvfile import read_csv_dataset
from tests.integration.loaders_data import write_csv_dataset

REPO = Path(__file__).resolve().parents[2]
GENERATIONS = "MATCH (n) WHERE n.dataset = $dataset RETURN n.gen AS gen, count(*) AS n ORDER BY gen"
SAMPLE = (
    "MATCH (d:Dataset {name: $dataset}) "
    "MATCH (u:User {dataset: d.name, gen: d.gen})-[r:INTERACTED]->(i:Item {dataset: d.name, gen: d.gen}) "
    "RETURN u.id AS u, i.id AS i, r.rating AS rating ORDER BY u, i"
)


class Boom(RuntimeError):
    """The injected failure."""


def _frames(folder: Path, name: str, **kw: Any) -> Any:
    paths = write_csv_dataset(folder, **kw)
    return read_csv_dataset(paths["items"], paths["interactions"], paths["users"], name=name)


def _generations(driver: Any, dataset: str, db: str) -> dict[int, int]:
    return {r["gen"]: r["n"] for r in read(driver, GENERATIONS, {"dataset": dataset}, db)}


@pytest.fixture
def old_graph(tmp_path: Path, neo4j_driver: Any, neo4j_info: Any, request: pytest.FixtureRequest) -> Any:
    """A dataset loaded once (the 'previous graph'), plus a different dataset to replace it with."""
    name = f"it-fail-{request.node.name[:20]}"
    db = neo4j_info.database
    drop_dataset(neo4j_driver, name, db)
    old = _frames(tmp_path / "old", name, n_users=15, n_items=25, per_user=6, seed=1)
    summary = load_frames(neo4j_driver, old, LoadOptions(mode="replace", progress=False, database=db))
    new = _frames(tmp_path / "new", name, n_users=30, n_items=40, per_user=10, seed=2)
    before = {
        "gen": summary.generation,
        "counts": dataset_counts(neo4j_driver, name, summary.generation, db),
        "sample": [dict(r) for r in read(neo4j_driver, SAMPLE, {"dataset": name}, db)],
    }
    yield name, new, before, tmp_path
    drop_dataset(neo4j_driver, name, db)


def _assert_unchanged(driver: Any, db: str, name: str, before: dict[str, Any]) -> None:
    assert active_generation(driver, name, db) == before["gen"]
    assert dataset_counts(driver, name, before["gen"], db) == before["counts"]
    assert [dict(r) for r in read(driver, SAMPLE, {"dataset": name}, db)] == before["sample"]


def test_failure_after_some_batches_keeps_the_old_graph(old_graph: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    name, new, before, _ = old_graph
    db = neo4j_info.database
    seen: list[tuple[str, int]] = []

    def fail_in_interactions(phase: str, batch: int) -> None:
        seen.append((phase, batch))
        if phase == "interactions" and batch == 3:
            # the old graph is still what readers see while the new generation is half written
            _assert_unchanged(neo4j_driver, db, name, before)
            raise Boom("injected failure")

    with pytest.raises(LoadError, match="injected failure") as info:
        load_frames(neo4j_driver, new, LoadOptions(mode="replace", batch_size=25, progress=False, database=db), on_batch=fail_in_interactions)
    assert "previous graph" in str(info.value) and isinstance(info.value.__cause__, Boom)
    assert ("users", 1) in seen and ("interactions", 3) in seen
    _assert_unchanged(neo4j_driver, db, name, before)
    assert _generations(neo4j_driver, name, db) == {before["gen"]: _generations(neo4j_driver, name, db)[before["gen"]]}
    ds = list_datasets(neo4j_driver, db, name)[0]
    assert ds.loading_gen is None and ds.garbage == []


def test_neo4j_going_away_leaves_the_partial_generation_for_cleanup(old_graph: Any, neo4j_driver: Any, neo4j_info: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name, new, before, _ = old_graph
    db = neo4j_info.database

    def connection_lost(phase: str, batch: int) -> None:
        if phase == "interactions" and batch == 2:
            # from here on every cleanup attempt fails, as if the server had gone away
            def unavailable(*args: Any, **kwargs: Any) -> None:
                raise Neo4jUnavailableError("Neo4j at bolt://test is not reachable: connection lost")

            monkeypatch.setattr(load_module, "release_lease", unavailable)
            monkeypatch.setattr(load_module, "delete_generation", unavailable)
            raise Neo4jUnavailableError("Neo4j at bolt://test is not reachable: connection lost")

    with pytest.raises(LoadError, match="not reachable"):
        load_frames(neo4j_driver, new, LoadOptions(mode="replace", batch_size=25, progress=False, database=db), on_batch=connection_lost)
    monkeypatch.undo()
    _assert_unchanged(neo4j_driver, db, name, before)
    gens = _generations(neo4j_driver, name, db)
    assert len(gens) == 2  # the partial generation is still there, invisible to readers
    partial = max(gens)
    reports = cleanup(neo4j_driver, name, db)
    assert [r.generations for r in reports] == [[partial]]
    assert set(_generations(neo4j_driver, name, db)) == {before["gen"]}
    _assert_unchanged(neo4j_driver, db, name, before)


def _env(info: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"NEO4J_URI": info.uri, "NEO4J_USER": info.user, "NEO4J_PASSWORD": info.password, "NEO4J_DATABASE": info.database})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_killed_replace_keeps_the_old_graph_and_the_next_load_cleans_up(old_graph: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    name, new, before, tmp_path = old_graph
    db = neo4j_info.database
    paths = write_csv_dataset(tmp_path / "kill", n_users=60, n_items=80, per_user=20, seed=5)
    cmd = [
        sys.executable, "-m", "api.cli.main", "load", "csv",
        "--items", str(paths["items"]), "--interactions", str(paths["interactions"]), "--users", str(paths["users"]),
        "--dataset", name, "--mode", "replace", "--batch-size", "1", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(neo4j_info), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        partial = None
        while time.monotonic() < deadline and proc.poll() is None:
            gens = _generations(neo4j_driver, name, db)
            new_gens = [g for g in gens if g != before["gen"]]
            if new_gens and gens[new_gens[0]] >= 40:  # users written, items under way
                partial = new_gens[0]
                break
            time.sleep(0.05)
        assert partial is not None, f"the load never got going: {proc.stdout.read().decode() if proc.poll() is not None else 'still running'}"  # type: ignore[union-attr]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    _assert_unchanged(neo4j_driver, db, name, before)
    ds = list_datasets(neo4j_driver, db, name)[0]
    assert ds.loading_gen == partial  # the dead load's lease is still there...
    assert partial in _generations(neo4j_driver, name, db)  # ...and so is its partial generation
    # the next load notices the dead lease (same host, pid gone) and removes the orphan first
    summary = load_frames(neo4j_driver, new, LoadOptions(mode="upsert", progress=False, database=db))
    assert partial in summary.old_generations_deleted
    assert summary.generation == before["gen"]  # upsert went into the untouched active generation
    assert set(_generations(neo4j_driver, name, db)) == {before["gen"]}


def test_a_second_load_of_the_same_dataset_is_refused_while_one_runs(old_graph: Any, neo4j_driver: Any, neo4j_info: Any) -> None:
    name, new, before, _ = old_graph
    db = neo4j_info.database
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lease = acquire_lease(neo4j_driver, name, "replace", fresh=True, database=db)
        # make the lease look like it belongs to another live process
        neo4j_driver.execute_query("MATCH (d:Dataset {name: $n}) SET d.loading_pid = $pid", {"n": name, "pid": holder.pid}, database_=db)
        with pytest.raises(LoadError, match="another load"):
            load_frames(neo4j_driver, new, LoadOptions(mode="replace", progress=False, database=db))
        neo4j_driver.execute_query("MATCH (d:Dataset {name: $n}) SET d.loading_pid = $pid", {"n": name, "pid": lease.pid}, database_=db)
        release_lease(neo4j_driver, lease, discard=True, database=db)
    finally:
        holder.kill()
        holder.wait()
    _assert_unchanged(neo4j_driver, db, name, before)
