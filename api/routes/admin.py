"""``/admin``: batch reloads and retrainings as background jobs (bearer token required)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from api.deps import AdminDep, GraphDep, GraphState
from api.jobs import JobRunner, check_args
from api.schemas import ErrorOut, JobOut, ReloadIn, TrainIn
from graph.embeddings import active_model
from graphrec.errors import GraphrecError

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep], responses={
    401: {"model": ErrorOut, "description": "No admin token."}, 403: {"model": ErrorOut, "description": "Wrong admin token."}})


def _runner(request: Request) -> JobRunner:
    """The app's job runner; its subprocesses talk to the same Neo4j and dataset as the API."""
    runner = getattr(request.app.state, "jobs", None)
    if runner is None:
        runner = request.app.state.jobs = JobRunner()
    graph: GraphState | None = getattr(request.app.state, "graph", None)
    if graph is not None:
        try:
            info = graph.info
            runner.env.update({"NEO4J_URI": info.uri, "NEO4J_USER": info.user, "NEO4J_PASSWORD": info.password,
                               "NEO4J_DATABASE": info.database, "GRAPHREC_DATASET": graph.dataset})
        except GraphrecError:
            pass  # not resolvable now: the CLI resolves it itself
    return runner


def _republish_step(graph: GraphState) -> list[str] | None:
    """``graphrec publish`` of the active model's checkpoint (resolved when the step runs)."""
    info = active_model(graph.driver, graph.dataset, graph.database)
    if info is None or not info.checkpoint:
        return None
    return ["publish", "--checkpoint", info.checkpoint, "--dataset", graph.dataset]


@router.post("/reload", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Start a batch reload")
def post_reload(request: Request, graph: GraphDep, body: ReloadIn) -> JobOut:
    """Runs ``graphrec load <source> --mode <mode> [--path P]``, then republishes the active model so new
    items get vectors from their text."""
    args = ["load", body.source, "--mode", body.mode]
    if body.path:
        args += ["--path", body.path]
    steps: list = [check_args(args)]
    if body.republish:
        steps.append(lambda: _republish_step(graph))
    job = _runner(request).submit("reload", steps)
    return JobOut(**job.as_dict())


@router.post("/train", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Start a retraining")
def post_train(request: Request, graph: GraphDep, body: TrainIn) -> JobOut:
    """Exports a snapshot from the graph, trains the fused model (``graphrec fuse``; ``graphrec train`` when the
    fusion command is not installed), then publishes the new checkpoint. Everything runs in subprocesses:
    the API process never trains."""
    import time

    from graphrec.settings import get_settings

    settings = get_settings()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    snap = str(settings.snapshots_dir / f"job-{graph.dataset}-{stamp}")
    out = str(settings.models_dir / f"job-{graph.dataset}-{stamp}")
    extra = check_args(list(body.extra_args))
    epochs = ["--epochs", str(body.epochs)] if body.epochs else []

    def trainer() -> list[str]:
        from api.cli.demo_cmd import _available

        if _available("fuse") is not None:
            return ["fuse", "--snapshot", snap, "--dataset", graph.dataset, "--out", out, *epochs, *extra]
        return ["train", "--snapshot", snap, "--dataset", graph.dataset, "--out", out, *epochs, *extra]

    steps: list = [["snapshot", "export", "--dataset", graph.dataset, "--split", "per_user_temporal", "--param", "test_fraction=0.2",
                    "--param", "val_fraction=0.1", "--out", snap], trainer]
    if body.publish:
        steps.append(["publish", "--checkpoint", out, "--dataset", graph.dataset])
    job = _runner(request).submit("train", steps)
    return JobOut(**job.as_dict())


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}}, summary="State of a background job")
def get_job(request: Request, job_id: Annotated[str, Path(min_length=1, max_length=64)]) -> JobOut:
    """``queued`` / ``running`` / ``succeeded`` / ``failed`` with the commands and the end of their output."""
    return JobOut(**_runner(request).get(job_id).as_dict())
