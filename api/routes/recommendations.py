"""``/recommendations``: cold start from liked items and/or free text."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import GraphDep
from api.routes.users import ERRORS, response_of, with_explanations
from api.schemas import ColdStartIn, RecommendationsOut, error_response
from graph.embeddings import require_active_model
from graph.recommend import recommend_cold_start as embedding_cold_start
from graph.serving.live import text_items
from graph.serving.planner import explain, recommend_cold_start
from graph.serving.store import GraphStore
from graphrec.errors import ModelNotReadyError, UnknownItemError

router = APIRouter(prefix="/recommendations", tags=["recommendations"])


@router.post("", response_model=RecommendationsOut, summary="Cold start: liked items and/or text", responses={**ERRORS, 409: error_response(
    409, "Free text, while the active model has no text model.", "no_text_model",
    "the active model has no text model: free-text cold start is not available (give liked_item_ids)")})
def post_cold_start(graph: GraphDep, body: ColdStartIn) -> RecommendationsOut:
    """Builds a query vector from the liked items' embeddings and/or the text (projected with the
    active model's cold-start head, the same text encoder as training) and searches the index.

    The text model loads at start-up in the background; until it is ready a request with ``text``
    answers 503 ``text_model_loading`` with ``Retry-After`` (``/v1/health`` shows ``text_model``)."""
    info = require_active_model(graph.driver, graph.dataset, graph.database)
    with_text = bool(body.text and body.text.strip())
    load = graph.coldstart_for_text if with_text else graph.coldstart  # text: 503 while the text model loads
    if info.kind == "live":  # liked items (and the items closest to the text) stand in for a history
        store = GraphStore(graph.driver, graph.dataset, graph.database)
        cs = load(info.tag, info.checkpoint) if with_text else None
        served = recommend_cold_start(store, body.liked_item_ids, body.text, body.k, body.filters(),
                                      text_items=(lambda text: text_items(store, info, cs.vector(text))) if cs is not None else None)
        return response_of(served.recs, explain(store, served) if body.explain else {})
    cs = load(info.tag, info.checkpoint)
    user_vector = None
    if cs is not None:
        def user_vector(liked: list[str], text: str | None):  # type: ignore[no-untyped-def]
            try:
                return cs.user_vector(liked, text)
            except UnknownItemError:
                if not text:
                    raise ModelNotReadyError("liked items are not in the model's vocabulary") from None
                return cs.user_vector((), text)
    for attempt in range(2):
        try:
            recs = embedding_cold_start(graph.driver, body.liked_item_ids, body.text, body.k, body.filters(), dataset=graph.dataset,
                                        database=graph.database, user_vector=user_vector if cs is not None else None, model_tag=info.tag)
            break
        except ModelNotReadyError:
            if attempt or cs is None:
                raise
            info = require_active_model(graph.driver, graph.dataset, graph.database)  # model switched: reload
            cs = load(info.tag, info.checkpoint)
    anchors = body.liked_item_ids or None
    return with_explanations(graph, recs, body.explain and anchors is not None, 3, anchors=anchors)
