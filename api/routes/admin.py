"""``/admin``: batch reloads and retrainings as background jobs, job state, user erasure (bearer token required)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from api.deps import AdminDep, GraphDep, GraphState
from api.jobs import JobRunner, check_args
from api.refit import default_refit_steps, train_steps
from api.schemas import ErasureOut, JobListOut, JobOut, ReloadIn, TrainIn, error_response
from graph.erasure import forget_user
from graph.embeddings import active_model
from graphrec.errors import GraphrecError

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep], responses={
    401: error_response(401, "No admin token.", "unauthorized", "admin token required (Authorization: Bearer <GRAPHREC_ADMIN_TOKEN>)"),
    403: error_response(403, "Wrong admin token, or admin routes disabled.", "forbidden", "wrong admin token")})


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
    """Runs ``graphrec load <source> --mode <mode> [--path P]``. A replace carries the feedback (unless
    ``drop_feedback``) and the active model into the new graph, then (``refit``) fits and publishes the
    default model; an upsert republishes the active model so new items get vectors from their text."""
    args = ["load", body.source, "--mode", body.mode, "--no-refit"]
    if body.path:
        args += ["--path", body.path]
    if body.drop_feedback:
        args.append("--drop-feedback")
    steps: list = [check_args(args)]
    if body.mode == "replace":
        if body.refit:
            from graphrec.settings import get_settings

            steps += default_refit_steps(graph.dataset, get_settings())
    elif body.republish:
        steps.append(lambda: _republish_step(graph))
    job = _runner(request).submit("reload", steps)
    return JobOut.of(job)


@router.post("/train", response_model=JobOut, status_code=status.HTTP_202_ACCEPTED, summary="Start a retraining")
def post_train(request: Request, graph: GraphDep, body: TrainIn) -> JobOut:
    """Exports a snapshot from the graph, trains the default model (:mod:`api.refit`: ``graphrec fit``; with
    ``lightgcn``, a LightGCN trained first joins its fusion), then publishes the new checkpoint. Everything runs in subprocesses:
    the API process never trains."""
    import time

    from graphrec.settings import get_settings

    settings = get_settings()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    snap = str(settings.snapshots_dir / f"job-{graph.dataset}-{stamp}")
    out = str(settings.models_dir / f"job-{graph.dataset}-{stamp}")
    extra = check_args(list(body.extra_args))
    steps: list = train_steps(graph.dataset, snap, out, epochs=body.epochs, extra=extra, publish=body.publish, lightgcn=body.lightgcn)
    job = _runner(request).submit("train", steps)
    return JobOut.of(job)


@router.get("/jobs", response_model=JobListOut, summary="Background jobs, newest first")
def list_jobs(request: Request, state: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|interrupted)$")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JobListOut:
    """The jobs kept in Neo4j (they outlive the API process); a job whose API process stopped while it ran
    is ``interrupted``."""
    return JobListOut(jobs=[JobOut.of(j) for j in _runner(request).list(state=state, limit=limit)])


@router.get("/jobs/{job_id}", response_model=JobOut, summary="State and progress of a background job", responses={
    404: error_response(404, "Unknown job.", "not_found", "unknown job 'x'")})
def get_job(request: Request, job_id: Annotated[str, Path(min_length=1, max_length=64)]) -> JobOut:
    """``queued`` / ``running`` / ``succeeded`` / ``failed`` / ``interrupted``, the progress (finished steps / steps),
    the commands and the end of their output."""
    return JobOut.of(_runner(request).get(job_id))


@router.delete("/users/{user_id}", response_model=ErasureOut, summary="Erase a user (privacy request)", responses={
    404: error_response(404, "Unknown user.", "unknown_user", "unknown user 'nobody' in dataset 'movielens'")})
async def delete_user(graph: GraphDep, user_id: Annotated[str, Path(min_length=1, max_length=200)]) -> ErasureOut:
    """Removes the user from every generation of the dataset with their interactions, feedback and tags, and
    corrects what was derived from them (co-like counts, weights and witnesses, liker and tag counts); their
    vector and serving list go with the user node. Afterwards no answer or explanation uses them, and the next
    snapshot export (so the next fit) does not see them. Same as ``graphrec forget-user USER_ID``."""
    report = await graph.run_query(lambda: forget_user(graph.driver, graph.dataset, user_id, graph.database))
    graph.forget_user(user_id)
    return ErasureOut(**report.model_dump())
