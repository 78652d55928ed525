"""``/interactions``: feedback written into the graph."""

from __future__ import annotations

import time

from fastapi import APIRouter, status

from api.deps import GraphDep
from api.routes.users import ERRORS
from api.schemas import InteractionIn, InteractionOut
from graph.co_likes import refresh_co_likes
from graph.recommend import Interaction, record_interaction

router = APIRouter(prefix="/interactions", tags=["feedback"])


@router.post("", response_model=InteractionOut, status_code=status.HTTP_201_CREATED, responses=ERRORS,
             summary="Record feedback (a rating or an implicit interaction)")
def post_interaction(graph: GraphDep, body: InteractionIn) -> InteractionOut:
    """Writes ``(:User)-[:INTERACTED {rating, ts, source: 'feedback'}]->(:Item)``; later recommendations
    with ``exclude_seen=true`` leave the item out at once, and the materialised co-like counts that the
    write changed are recomputed before the answer (so explanations stay exact)."""
    data = body.model_dump()
    if data["ts"] is None:
        data["ts"] = int(time.time())
    result = record_interaction(graph.driver, Interaction(**data), dataset=graph.dataset, database=graph.database)
    refresh_co_likes(graph.driver, graph.dataset, result.user_id, result.item_id, created=result.created_relationship, database=graph.database)
    return InteractionOut(**result.model_dump())
