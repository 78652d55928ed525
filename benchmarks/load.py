"""``graphrec bench load``: wall time and rows/s of a fresh load and of an upsert re-run.

The benchmark loads into its own dataset name (default ``bench-<dataset>``), which it drops first
(and, unless ``--keep``, at the end), so the user's datasets are never touched. It prints the
per-phase table of both runs, checks that the upsert re-run left every count unchanged (no
duplicates), and ends with one JSON object holding all numbers.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from enum import Enum
from pathlib import Path

import typer

from graphrec.settings import get_settings


class BenchDataset(str, Enum):
    """Datasets the load benchmark knows how to read."""

    gowalla = "gowalla"
    movielens = "movielens"


def load_bench(
    dataset: BenchDataset = typer.Option(..., "--dataset", help="gowalla (LightGCN split files) or movielens."),
    path: Path | None = typer.Option(None, "--path", help="Data folder (gowalla: train.txt/test.txt; movielens: default the bundled ml-latest-small)."),
    name: str | None = typer.Option(None, "--name", help="Dataset name used in the graph (default: bench-<dataset>); dropped before the run."),
    batch_size: int = typer.Option(10_000, "--batch-size", min=1, help="Rows per UNWIND transaction."),
    writers: int = typer.Option(1, "--writers", min=1, max=8, help="Write transactions in flight at once."),
    keep: bool = typer.Option(False, "--keep/--drop", help="Keep the benchmark dataset in the graph afterwards (default: drop it)."),
    json_out: Path | None = typer.Option(None, "--json-out", help="Also write the JSON result to this file."),
) -> None:
    """Time a fresh load and an upsert re-run of the same data; verify the re-run created no duplicates."""
    from api.cli.common import open_graph
    from graph.datasets import drop_dataset
    from graph.load import LoadOptions, load_frames
    from graphrec.errors import ConfigError, LoadError

    if dataset is BenchDataset.gowalla and path is None:
        raise ConfigError("--path is required for gowalla (the folder with train.txt and test.txt)")
    graph_name = name or f"bench-{dataset.value}"
    settings = get_settings()

    t0 = time.perf_counter()
    if dataset is BenchDataset.gowalla:
        from loaders.lightgcn import read_lightgcn

        frames = read_lightgcn(path, name=graph_name)  # type: ignore[arg-type]
    else:
        from loaders.movielens import read_movielens

        frames = read_movielens(path, name=graph_name)
    read_s = time.perf_counter() - t0
    typer.echo(f"read + validate: {read_s:.2f} s ({frames.counts}, {len(frames.problems)} rejected rows)")

    progress = sys.stderr.isatty()
    results: dict[str, object] = {"dataset": dataset.value, "path": str(path) if path else "bundled", "graph_name": graph_name, "read_s": round(read_s, 3), "counts_in_files": frames.counts}
    with open_graph(settings) as driver:
        dropped = drop_dataset(driver, graph_name, settings.neo4j_database)
        if dropped:
            typer.echo(f"dropped {dropped:,} nodes of an earlier {graph_name!r}")
        runs = {}
        for label, mode in (("fresh load", "upsert"), ("upsert re-run", "upsert")):
            options = LoadOptions(mode=mode, batch_size=batch_size, max_errors=len(frames.problems), database=settings.neo4j_database, progress=progress, writers=writers)
            t = time.perf_counter()
            summary = load_frames(driver, frames, options)
            wall = time.perf_counter() - t
            typer.echo(f"\n== {label}: {wall:.1f} s wall ==")
            typer.echo(summary.table())
            runs[label] = (summary, wall)
        fresh, fresh_wall = runs["fresh load"]
        rerun, rerun_wall = runs["upsert re-run"]
        unchanged = fresh.counts == rerun.counts
        if not keep:
            drop_dataset(driver, graph_name, settings.neo4j_database)

    def phases(summary: object) -> list[dict[str, object]]:
        return [{"phase": p.name, "rows": p.rows, "seconds": round(p.seconds, 3), "rows_per_s": round(p.rows_per_s, 1)} for p in summary.phases]  # type: ignore[attr-defined]

    results.update(
        {
            "batch_size": batch_size,
            "writers": writers,
            "fresh_load": {"wall_s": round(fresh_wall, 3), "rows_written": fresh.rows_written, "rows_per_s": round(fresh.rows_written / fresh_wall, 1), "phases": phases(fresh)},
            "upsert_rerun": {"wall_s": round(rerun_wall, 3), "rows_written": rerun.rows_written, "rows_per_s": round(rerun.rows_written / rerun_wall, 1), "phases": phases(rerun)},
            "counts_after_fresh": fresh.counts.model_dump(),
            "counts_after_rerun": rerun.counts.model_dump(),
            "counts_unchanged": unchanged,
            "machine": {"python": platform.python_version(), "cpus": _cpu_count(), "platform": platform.platform()},
        }
    )
    text = json.dumps(results, indent=2)
    typer.echo("\n" + text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text)
    if not unchanged:
        raise LoadError(f"the upsert re-run changed the counts: {fresh.counts} -> {rerun.counts}")


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``graphrec bench load`` to the shared ``bench`` sub-app."""
    bench_app.command("load")(load_bench)
