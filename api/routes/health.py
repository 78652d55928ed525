"""``/health``: is Neo4j reachable, which model is active."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import GraphDep
from api.errors import describe
from api.schemas import HealthOut
from graph.health import serving_health
from graphrec.errors import GraphrecError

router = APIRouter(prefix="/health", tags=["health"])

RETRY_AFTER_S = 5


@router.get("", response_model=HealthOut, responses={503: {"model": HealthOut, "description": "Neo4j unreachable."}},
            summary="Liveness, Neo4j reachability and the active model version")
async def get_health(graph: GraphDep, response: Response) -> HealthOut:
    """200 when Neo4j answers: ``ok`` when the active model serves the active generation, ``degraded`` with the
    ``reason`` when no model is published or it does not cover the active generation (coverage below
    GRAPHREC_MIN_COVERAGE); 503 ``down`` (with ``Retry-After``) while Neo4j does not answer."""
    try:
        h = await run_in_threadpool(serving_health, graph.driver, graph.dataset, graph.database, graph.settings.min_coverage)
    except GraphrecError as e:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return HealthOut(status="down", neo4j="unreachable", dataset=graph.dataset, detail=describe(e)[2], reason="Neo4j is unreachable",
                         text_model=graph.text_model, text_model_detail=graph.text_model_detail)  # type: ignore[arg-type]
    return HealthOut(status=h.status, neo4j="ok", dataset=graph.dataset, model_version=h.model_version, model_tag=h.model_tag,
                     published_at=h.published_at, reason=h.reason, generation=h.generation, model_generation=h.model_generation,
                     coverage=h.coverage, reloading=h.reloading, text_model=graph.text_model,  # type: ignore[arg-type]
                     text_model_detail=graph.text_model_detail)
