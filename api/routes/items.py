"""``/items``: similar items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import GraphDep
from api.routes.users import ERRORS, response_of
from api.schemas import RecommendationsOut
from graph.recommend import Filters
from graph.serving.planner import explain, similar_items
from graph.serving.store import GraphStore

router = APIRouter(prefix="/items", tags=["items"])


@router.get("/{item_id}/similar", response_model=RecommendationsOut, responses=ERRORS, summary="Items similar to an item")
def get_similar(
    graph: GraphDep,
    item_id: Annotated[str, Path(min_length=1, max_length=200, examples=["1221"])],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    genre: Annotated[list[str] | None, Query(max_length=50)] = None,
    explain_: Annotated[bool, Query(alias="explain", description="Explain each item relative to this one.")] = False,
) -> RecommendationsOut:
    """Ranks items by :math:`s^\\top i` (what a user whose taste is exactly this item would get)."""
    store = GraphStore(graph.driver, graph.dataset, graph.database)
    served = similar_items(store, item_id, k, Filters(genres=genre))
    return response_of(served.recs, explain(store, served) if explain_ else {})
