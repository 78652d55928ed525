"""``/users``: personalised recommendations, with explanations and their picture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from api.deps import GraphDep
from api.schemas import RecommendationsOut, RecommendedItemOut, error_response
from graph.explain import Explanation, explain
from graph.recommend import RecommendationList, recommend, validate_filters
from graph.recommend_explained import fetch_explained
from graph.serving.planner import explain as planner_explain
from graph.serving.planner import explain_item_live
from graph.serving.planner import recommend_live
from graph.serving.store import GraphStore
from graphrec.errors import UnknownItemError

router = APIRouter(prefix="/users", tags=["recommendations"])

UserId = Annotated[str, Path(min_length=1, max_length=200, description="External user id.", examples=["1"])]
ItemId = Annotated[str, Path(min_length=1, max_length=200, description="External item id.", examples=["1221"])]

ERRORS: dict[int | str, dict[str, object]] = {
    404: error_response(404, "Unknown user or item.", "unknown_user", "unknown user 'nobody' in dataset 'movielens'"),
    503: error_response(503, "Neo4j unreachable, no model published, or the text model still loading (Retry-After).",
                        "model_not_ready", "no model is published for dataset 'movielens' (run `graphrec publish --checkpoint PATH`)"),
}


def with_explanations(graph: GraphDep, recs: RecommendationList, explain_it: bool, reasons: int, *, user_id: str | None = None,
                      anchors: list[str] | None = None) -> RecommendationsOut:
    """Attach explanations (one query for all items) and build the response."""
    exps = {}
    if explain_it and recs.items:
        exps = explain(graph.driver, [i.item_id for i in recs.items], dataset=graph.dataset, user_id=user_id,
                       anchor_item_ids=anchors, max_reasons=reasons, database=graph.database)
    return response_of(recs, exps)


_OUT_FIELDS = set(RecommendationsOut.model_fields)


def response_json(recs: RecommendationList, explanations: dict[str, dict[str, Any]]) -> Response:
    """The response body from explanations given as plain dicts (:func:`graph.explain.explanation_dict`):
    the same JSON as ``_json(response_of(...))`` (a unit test compares them) without validating again
    what the graph layer built."""
    body = recs.model_dump(include=_OUT_FIELDS)
    for item in body["items"]:
        item["explanation"] = explanations.get(item["item_id"])
    return Response(to_json(body), media_type="application/json")


def response_of(recs: RecommendationList, explanations: dict[str, Explanation]) -> RecommendationsOut:
    """The response body: every item with its explanation (``None`` when it has none)."""
    items = [RecommendedItemOut(**i.model_dump(), explanation=explanations.get(i.item_id)) for i in recs.items]
    return RecommendationsOut(dataset=recs.dataset, model_version=recs.model_version, user_id=recs.user_id, item_id=recs.item_id, items=items)


@router.get("/{user_id}/recommendations", response_model=RecommendationsOut, responses=ERRORS,
            summary="Top-k recommendations for a user, optionally explained")
async def get_recommendations(
    graph: GraphDep,
    user_id: UserId,
    k: Annotated[int, Query(ge=1, le=100, description="How many items.")] = 10,
    genre: Annotated[list[str] | None, Query(max_length=50, description="Keep items with one of these genres (repeat the parameter).")] = None,
    year_min: Annotated[int | None, Query(ge=0, le=3000)] = None,
    year_max: Annotated[int | None, Query(ge=0, le=3000, description="Not below year_min (422 otherwise).")] = None,
    exclude: Annotated[list[str] | None, Query(max_length=1000, description="Item ids never to recommend.")] = None,
    include: Annotated[list[str] | None, Query(max_length=1000, description="Recommend only among these item ids.")] = None,
    exclude_seen: Annotated[bool, Query(description="Drop items the user already interacted with (feedback included).")] = True,
    diversity: Annotated[float, Query(ge=0.0, le=1.0, description="MMR diversity (0 = off).")] = 0.0,
    explain_: Annotated[bool, Query(alias="explain", description="Attach explanations (graph paths + weights).")] = False,
    reasons: Annotated[int, Query(ge=1, le=4, description="Reasons per item when explaining.")] = 3,
) -> Response:
    """The user's serving list (or a vector search with the user's embedding), then Cypher filters; with
    ``explain=true`` the explanations come from the same query when both fast paths apply, else from one more.

    ``async`` with the blocking driver work in ONE worker-thread hop (a sync route would also run its
    dependency and the response validation in the thread pool: three hops per request).
    """
    filters = validate_filters(dict(exclude_seen=exclude_seen, genres=genre, year_min=year_min, year_max=year_max, include_ids=include,
                                    exclude_ids=exclude or [], diversity=diversity))

    def work() -> Response | Callable[[], tuple[RecommendationList, dict[str, Any]]]:
        store = GraphStore(graph.driver, graph.dataset, graph.database)
        served = recommend_live(store, user_id, k, filters)  # a live model: scored from the user's history as it is now
        if served is not None:  # explanations as plain dicts, serialised once with the answer
            return response_json(served.recs, planner_explain(store, served, reasons, as_dicts=True) if explain_ else {})
        assemble = fetch_explained(graph.driver, user_id, k, filters, dataset=graph.dataset, database=graph.database,
                                   max_reasons=reasons, as_dicts=True) if explain_ else None
        if assemble is not None:  # one round trip: the user's serving list and the materialised explanations
            return assemble
        recs = recommend(graph.driver, user_id, k, filters, dataset=graph.dataset, database=graph.database)
        return _json(with_explanations(graph, recs, explain_, reasons, user_id=user_id))

    done = await graph.run_query(work)
    # the one-query path's rows become the answer here, outside the admission limit (pure Python, no Neo4j)
    return done if isinstance(done, Response) else response_json(*done())


def _json(out: RecommendationsOut) -> Response:
    """Serialised by pydantic-core (FastAPI would re-validate the model and encode it with json.dumps)."""
    return Response(out.model_dump_json(), media_type="application/json")


@router.get("/{user_id}/recommendations/{item_id}/explanation.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "The user, the item and the paths that justify it."}, **ERRORS},
    summary="Picture of an explanation")
async def get_explanation_png(graph: GraphDep, user_id: UserId, item_id: ItemId,
                              reasons: Annotated[int, Query(ge=1, le=4)] = 4) -> Response:
    """Draws the explanation paths of ``item_id`` for ``user_id`` with networkx + matplotlib (Agg)."""
    def work() -> bytes:
        from graph.explain_plot import explanation_png

        live = explain_item_live(GraphStore(graph.driver, graph.dataset, graph.database), user_id, item_id, reasons)
        if live is not None:  # a live model: the NEIGHBOUR paths from the user's history
            return explanation_png(live, user_id)
        exps = explain(graph.driver, [item_id], dataset=graph.dataset, user_id=user_id, max_reasons=reasons, database=graph.database)
        if item_id not in exps:
            raise UnknownItemError(f"unknown item {item_id!r} in dataset {graph.dataset!r}")
        return explanation_png(exps[item_id], user_id)

    png = await run_in_threadpool(work)
    return Response(content=png, media_type="image/png")
