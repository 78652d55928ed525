"""``graphrec load movielens|lightgcn|csv|cleanup``: batch loads and reloads of the graph.

Every load reads and validates all files first (bad rows are reported as ``file:line: reason``),
stops before touching Neo4j when there are more than ``--max-errors`` of them, then writes in
fixed-size ``UNWIND`` batches with a progress bar per phase and prints a summary.
``--mode upsert`` (default) merges into the active graph of the dataset; ``--mode replace``
builds a new generation and switches to it only when it is complete.
"""

from __future__ import annotations

import csv
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from graphrec.settings import get_settings

if TYPE_CHECKING:
    from graph.load import LoadSummary
    from graphrec.frames import DatasetFrames

HELP = "Load datasets into Neo4j (validated, batched; upsert or atomic replace)."


class Mode(str, Enum):
    """Load modes."""

    upsert = "upsert"
    replace = "replace"


class MovieLensFormatOpt(str, Enum):
    """MovieLens layouts."""

    latest = "latest"
    m25 = "25m"
    k100 = "100k"
    m1 = "1m"


MODE_OPT = typer.Option(Mode.upsert, "--mode", help="upsert: MERGE into the active graph (re-runs create no duplicates); replace: build a new generation, switch atomically, delete the old one.")
MAX_ERRORS_OPT = typer.Option(0, "--max-errors", min=0, help="Bad rows tolerated (skipped and reported); more stops the load before anything is written.")
BATCH_OPT = typer.Option(10_000, "--batch-size", min=1, max=1_000_000, help="Rows (or relationships) per UNWIND transaction.")
WRITERS_OPT = typer.Option(1, "--writers", min=1, max=8, help="Write transactions in flight at once.")
REPORT_OPT = typer.Option(None, "--report", help="Write every rejected row to this CSV (file,line,reason).")
PROGRESS_OPT = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per phase.")
DROP_FEEDBACK_OPT = typer.Option(False, "--drop-feedback", help="replace: do not carry the interactions written through the API "
                                 "into the new graph (by default they are carried when their user and item still exist).")
REFIT_OPT = typer.Option(True, "--refit/--no-refit", help="replace with a published model: afterwards, start a refit and publish "
                         "of the default model in the background (`graphrec refit`, log under GRAPHREC_HOME/logs).")


def print_problems(frames: DatasetFrames, report: Path | None, limit: int = 50) -> None:
    """Print the rejected rows to stderr (first ``limit``) and optionally write them all to a CSV."""
    from loaders.validation import format_problems

    if frames.problems:
        typer.echo(f"{len(frames.problems)} rejected row(s):", err=True)
        typer.echo(format_problems(frames.problems, limit=limit), err=True)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        with report.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "line", "reason"])
            for p in sorted(frames.problems, key=lambda p: (p.file, p.line)):
                w.writerow([p.file, p.line, p.reason])
        typer.echo(f"rejected rows written to {report}", err=True)


def new_item_vectors_for(driver: object, dataset: str, database: str, settings: object) -> object:
    """``(ids, texts) -> (vectors, text vectors)`` for items a replace adds, from the active checkpoint's
    cold-start head (None when no model is published; the callback answers None when its checkpoint
    has no text head). The checkpoint is read only when the reload finds new items."""
    from graph.embeddings import active_model

    model = active_model(driver, dataset, database)  # type: ignore[arg-type]
    if model is None or not model.checkpoint:
        return None
    checkpoint = Path(model.checkpoint)

    def compute(ids: list[str], texts: list[str]) -> object:
        from api.cli.publish_cmd import _text_encoder, load_embeddings

        if not checkpoint.exists():
            return None
        emb = load_embeddings(checkpoint)
        if emb.coldstart is None:
            return None
        vectors = emb.coldstart.item_vectors(texts)
        encode = _text_encoder(emb, settings, checkpoint) if model.text_prop else None
        return vectors, (encode(ids, texts) if encode is not None else None)

    return compute


def run_load(frames: DatasetFrames, mode: Mode, max_errors: int, batch_size: int, writers: int, progress: bool, report: Path | None,
             drop_feedback: bool = False, refit: bool = True) -> LoadSummary:
    """Report problems, open the graph, load the frames and print the summary; after a replace over a
    published model, start the background refit (``refit``)."""
    from api.cli.common import open_graph
    from graph.load import LoadOptions, load_frames
    from loaders.validation import enforce_max_errors

    print_problems(frames, report)
    enforce_max_errors(frames.problems, max_errors)  # before connecting: nothing is written
    settings = get_settings()
    options = LoadOptions(mode=mode.value, batch_size=batch_size, max_errors=max_errors, database=settings.neo4j_database,
                          progress=progress and sys.stderr.isatty(), writers=writers, carry_feedback=not drop_feedback)
    with open_graph(settings) as driver:
        cold = new_item_vectors_for(driver, frames.name, settings.neo4j_database, settings) if mode == Mode.replace else None
        summary = load_frames(driver, frames, options, new_item_vectors=cold)  # type: ignore[arg-type]
    typer.echo(summary.table())
    if mode == Mode.replace and summary.model is not None:
        if refit:
            from api.cli.refit_cmd import start_refit_detached

            pid, log = start_refit_detached(frames.name, settings)
            typer.echo(f"refit of the default model started in the background (pid {pid}, log {log}); "
                       "it publishes when done, the carried model serves until then")
        else:
            typer.echo("no refit started (--no-refit): the carried model serves until the next `graphrec refit` / publish")
    return summary


def movielens(
    path: Path | None = typer.Option(None, "--path", help="MovieLens folder (default: the bundled ml-latest-small)."),
    fmt: MovieLensFormatOpt | None = typer.Option(None, "--format", help="Layout: latest (also ml-latest-small), 25m, 100k, 1m (default: detected)."),
    dataset: str = typer.Option("movielens", "--dataset", help="Dataset name in the graph."),
    mode: Mode = MODE_OPT,
    max_errors: int = MAX_ERRORS_OPT,
    batch_size: int = BATCH_OPT,
    writers: int = WRITERS_OPT,
    report: Path | None = REPORT_OPT,
    progress: bool = PROGRESS_OPT,
    drop_feedback: bool = DROP_FEEDBACK_OPT,
    refit: bool = REFIT_OPT,
) -> None:
    """Load MovieLens: movies (genres, year), ratings, tags."""
    from loaders.movielens import read_movielens

    frames = read_movielens(path, fmt.value if fmt else None, name=dataset)  # type: ignore[arg-type]
    run_load(frames, mode, max_errors, batch_size, writers, progress, report, drop_feedback, refit)


def lightgcn(
    path: Path = typer.Option(..., "--path", help="Folder with train.txt and test.txt (and optionally user_list.txt, item_list.txt)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name in the graph (default: the folder name)."),
    mode: Mode = MODE_OPT,
    max_errors: int = MAX_ERRORS_OPT,
    batch_size: int = BATCH_OPT,
    writers: int = WRITERS_OPT,
    report: Path | None = REPORT_OPT,
    progress: bool = PROGRESS_OPT,
    drop_feedback: bool = DROP_FEEDBACK_OPT,
    refit: bool = REFIT_OPT,
) -> None:
    """Load a LightGCN-format split (e.g. Gowalla); test interactions keep split='test'."""
    from loaders.lightgcn import read_lightgcn

    frames = read_lightgcn(path, name=dataset or path.resolve().name)
    run_load(frames, mode, max_errors, batch_size, writers, progress, report, drop_feedback, refit)


def csv_files(
    items: Path = typer.Option(..., "--items", help="items.csv: id, title, text, year, genres|tags|categories|brands ('|'-separated)."),
    interactions: Path = typer.Option(..., "--interactions", help="interactions.csv: user_id, item_id, rating?, timestamp?, split?"),
    users: Path | None = typer.Option(None, "--users", help="users.csv: id (optional)."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name in the graph."),
    rating_min: float = typer.Option(0.0, "--rating-min", help="Smallest valid rating."),
    rating_max: float = typer.Option(5.0, "--rating-max", help="Largest valid rating."),
    mode: Mode = MODE_OPT,
    max_errors: int = MAX_ERRORS_OPT,
    batch_size: int = BATCH_OPT,
    writers: int = WRITERS_OPT,
    report: Path | None = REPORT_OPT,
    progress: bool = PROGRESS_OPT,
    drop_feedback: bool = DROP_FEEDBACK_OPT,
    refit: bool = REFIT_OPT,
) -> None:
    """Load the generic CSV layout (see docs/data.md)."""
    from loaders.csvfile import read_csv_dataset

    frames = read_csv_dataset(items, interactions, users, name=dataset, rating_min=rating_min, rating_max=rating_max)
    run_load(frames, mode, max_errors, batch_size, writers, progress, report, drop_feedback, refit)


def cleanup(
    dataset: str | None = typer.Option(None, "--dataset", help="Only this dataset (default: all)."),
) -> None:
    """Delete generations left by failed or killed loads (running loads are left alone)."""
    from api.cli.common import open_graph
    from graph.datasets import cleanup as cleanup_generations

    settings = get_settings()
    with open_graph(settings) as driver:
        reports = cleanup_generations(driver, dataset, settings.neo4j_database)
    if not reports:
        typer.echo("nothing to clean up")
    for r in reports:
        typer.echo(f"{r.dataset}: deleted generation(s) {r.generations} ({r.nodes_deleted:,} nodes)")


def register(app: typer.Typer) -> None:
    """Add ``graphrec load ...`` to the app."""
    load_app = typer.Typer(name="load", help=HELP, no_args_is_help=True)
    load_app.command("movielens")(movielens)
    load_app.command("lightgcn")(lightgcn)
    load_app.command("csv")(csv_files)
    load_app.command("cleanup")(cleanup)
    app.add_typer(load_app, name="load")
