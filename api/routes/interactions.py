"""``/interactions``: feedback written into the graph."""

from __future__ import annotations

import time

from fastapi import APIRouter, status

from api.deps import GraphDep
from api.routes.users import ERRORS
from api.schemas import InteractionIn, InteractionOut
from graph.feedback import Interaction, record_interaction

router = APIRouter(prefix="/interactions", tags=["feedback"])


@router.post("", response_model=InteractionOut, status_code=status.HTTP_201_CREATED, responses=ERRORS,
             summary="Record feedback (a rating or an implicit interaction)")
def post_interaction(graph: GraphDep, body: InteractionIn) -> InteractionOut:
    """Writes ``(:User)-[:INTERACTED {rating, ts, source: 'feedback'}]->(:Item)``; later recommendations
    with ``exclude_seen=true`` leave the item out at once. When the write changes whether the user likes
    the item, the materialised co-likes it affects are updated in the same transaction, incrementally
    (so explanations stay exact)."""
    data = body.model_dump()
    if data["ts"] is None:
        data["ts"] = int(time.time())
    result = record_interaction(graph.driver, Interaction(**data), dataset=graph.dataset, database=graph.database)
    return InteractionOut(**result.model_dump())
