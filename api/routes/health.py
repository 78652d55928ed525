"""``/health``: is Neo4j reachable, which model is active."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import GraphDep
from api.errors import describe
from api.schemas import HealthOut
from graph.recommend import health
from graphrec.errors import GraphrecError

router = APIRouter(prefix="/health", tags=["health"])

RETRY_AFTER_S = 5


@router.get("", response_model=HealthOut, responses={503: {"model": HealthOut, "description": "Neo4j unreachable."}},
            summary="Liveness, Neo4j reachability and the active model version")
async def get_health(graph: GraphDep, response: Response) -> HealthOut:
    """200 with the active model when Neo4j answers; 503 (with ``Retry-After``) while it does not."""
    try:
        h = await run_in_threadpool(health, graph.driver, dataset=graph.dataset, database=graph.database)
    except GraphrecError as e:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return HealthOut(status="degraded", neo4j="unreachable", dataset=graph.dataset, detail=describe(e)[2],
                         text_model=graph.text_model, text_model_detail=graph.text_model_detail)  # type: ignore[arg-type]
    return HealthOut(status="ok", neo4j="ok", dataset=graph.dataset, model_version=h["model_version"], model_tag=h["model_tag"],
                     published_at=h["published_at"], text_model=graph.text_model,  # type: ignore[arg-type]
                     text_model_detail=graph.text_model_detail)
