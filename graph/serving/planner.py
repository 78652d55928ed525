"""Picks the candidate source of a request from the active model's kind.

A ``live`` publication answers from the user's history as it is in the graph now
(:mod:`graph.serving.live`); an ``embedding`` publication (LightGCN, the fused LightGCN) answers
from the stored vectors (:mod:`graph.recommend`). Either way the caller gets a
:class:`graph.recommend.RecommendationList`, and :func:`explain` gives the explanations that fit
how the list was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graph import recommend as embedding
from graph.embeddings import ModelInfo
from graph.explain import Explanation
from graph.explain import explain as explain_embedding
from graph.recommend import Filters, RecommendationList, validate_filters
from graph.serving.explain_live import explain_live
from graph.serving.catalogue import CATALOGUES
from graph.serving.live import Plan, live_ranking, plan, to_list
from graph.serving.store import GraphStore
from graph.serving.tables import TABLES
from graphrec.errors import InvalidArgumentError, ModelNotReadyError, NotFoundError, UnknownItemError, UnknownUserError

Q_ITEMS_EXIST = """
MATCH (d:Dataset {name: $dataset})
UNWIND $item_ids AS iid
OPTIONAL MATCH (i:Item {dataset: $dataset, gen: d.gen, id: iid})
RETURN iid AS id, i IS NOT NULL AS ok
"""


@dataclass
class Served:
    """An answer and what its explanations need."""

    recs: RecommendationList
    live: bool
    history: list[str] = field(default_factory=list)
    user_id: str | None = None
    anchors: list[str] | None = None
    gen: int | None = None
    loaded_at: str | None = None


def _check_k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= embedding.MAX_K:
        raise InvalidArgumentError(f"k must be an integer in 1..{embedding.MAX_K}, got {k!r}")
    return k


def _require_items(store: GraphStore, item_ids: Sequence[str], p: Plan | None = None) -> None:
    """Raise unless every id is an item of the active generation (known to its catalogue, else asked)."""
    if p is not None:
        known = CATALOGUES.get(store, p.gen, p.loaded_at).items
        item_ids = [i for i in item_ids if i not in known]
        if not item_ids:
            return
    rows = store.read(Q_ITEMS_EXIST, {"item_ids": list(item_ids)})
    if not rows and item_ids:
        raise NotFoundError(f"dataset {store.dataset!r} is not loaded")
    missing = [r["id"] for r in rows if not r["ok"]]
    if missing:
        raise UnknownItemError(f"unknown item(s) in dataset {store.dataset!r}: {', '.join(map(repr, missing[:10]))}")


def _live_model(store: GraphStore, user_id: str | None, *, wait: bool = False) -> tuple[ModelInfo | None, Plan]:
    """The live model that answers (``None``: the active model is an embedding model) and the plan.

    Right after a publish, until this process has read the new publication's tables (in the
    background, seconds), the publication it served before answers, when it holds its tables for the
    active generation (the answer names its version); ``wait`` (start-up) waits for the new one.
    """
    p = plan(store, user_id)
    info = p.info if p.info is not None and p.info.kind == "live" else None
    if info is not None and not TABLES.ready(store, info, p.gen) and not wait:
        info = TABLES.stand_in(store, info.tag, p.gen) or info  # no stand-in: this request waits for the tables
    return info, p


def recommend_live(store: GraphStore, user_id: str, k: int = 10, filters: Filters | dict[str, Any] | None = None) -> Served | None:
    """Top ``k`` for a known user when the active model is live; ``None`` when it is an embedding model.

    Raises:
        UnknownUserError: No such user in the active generation (live model).
    """
    _check_k(k)
    f = validate_filters(filters)
    info, p = _live_model(store, user_id)
    if info is None:
        return None
    if not p.user_ok:
        raise UnknownUserError(f"unknown user {user_id!r} in dataset {store.dataset!r}")
    scored, exact, searched = live_ranking(store, info, p.gen, p.history, k, f, user_id=user_id, loaded_at=p.loaded_at)
    return Served(to_list(store, info, scored, k, exact, searched, user_id=user_id), live=True, history=p.history, user_id=user_id,
                  gen=p.gen, loaded_at=p.loaded_at)


def recommend(store: GraphStore, user_id: str, k: int = 10, filters: Filters | dict[str, Any] | None = None) -> Served:
    """Top ``k`` for a known user.

    Raises:
        UnknownUserError: No such user in the active generation.
        ModelNotReadyError: No model published.
    """
    served = recommend_live(store, user_id, k, filters)
    if served is not None:
        return served
    recs = embedding.recommend(store.driver, user_id, k, validate_filters(filters), dataset=store.dataset, database=store.database)
    return Served(recs, live=False, user_id=user_id)


def similar_items(store: GraphStore, item_id: str, k: int = 10, filters: Filters | dict[str, Any] | None = None) -> Served:
    """Items for someone whose whole history is ``item_id`` (live), or nearest by embedding."""
    _check_k(k)
    f = validate_filters(filters)
    info, p = _live_model(store, None)
    if info is None:
        recs = embedding.similar_items(store.driver, item_id, k, f, dataset=store.dataset, database=store.database)
        return Served(recs, live=False, anchors=[item_id])
    _require_items(store, [item_id], p)
    f = f.model_copy(update={"exclude_seen": False, "exclude_ids": [*f.exclude_ids, item_id]})
    scored, exact, searched = live_ranking(store, info, p.gen, [item_id], k, f, loaded_at=p.loaded_at)
    return Served(to_list(store, info, scored, k, exact, searched, item_id=item_id), live=True, history=[item_id], anchors=[item_id],
                  gen=p.gen, loaded_at=p.loaded_at)


def recommend_cold_start(
    store: GraphStore, liked_item_ids: Sequence[str] = (), text: str | None = None, k: int = 10,
    filters: Filters | dict[str, Any] | None = None, *, text_items: Any = None, **embedding_kwargs: Any,
) -> Served:
    """Someone with no stored history: liked items and/or a free-text wish.

    Live models treat the liked items (plus, for text, the items whose text is closest to it,
    from ``text_items(text) -> [item ids]``) as the history. Embedding models use
    :func:`graph.recommend.recommend_cold_start` with ``embedding_kwargs``.
    """
    _check_k(k)
    liked = [str(i) for i in liked_item_ids]
    if not liked and not (text and text.strip()):
        raise InvalidArgumentError("give liked_item_ids and/or text")
    f = validate_filters(filters)
    info, p = _live_model(store, None)
    if info is None:
        recs = embedding.recommend_cold_start(store.driver, liked, text, k, f, dataset=store.dataset, database=store.database,
                                              **embedding_kwargs)
        return Served(recs, live=False, anchors=liked or None)
    if liked:
        _require_items(store, liked, p)
    history = list(liked)
    if text and text.strip():
        if text_items is None:
            raise ModelNotReadyError("free-text cold start needs the text model, which is not available")
        history += [i for i in text_items(text) if i not in history]
    f = f.model_copy(update={"exclude_seen": False, "exclude_ids": list(dict.fromkeys([*f.exclude_ids, *liked]))})
    scored, exact, searched = live_ranking(store, info, p.gen, history, k, f, loaded_at=p.loaded_at)
    return Served(to_list(store, info, scored, k, exact, searched), live=True, history=history, anchors=liked or None, gen=p.gen,
                  loaded_at=p.loaded_at)


def warm(store: GraphStore) -> str | None:
    """Read what requests to the active live model need and keep it in the process (its tables and the
    catalogue), so that the first request does not; returns the model's tag (``None``: no live model)."""
    info, p = _live_model(store, None, wait=True)
    if info is None:
        return None
    TABLES.get(store, info.tag, p.gen)
    CATALOGUES.get(store, p.gen, p.loaded_at)
    return info.tag


def explain_item_live(store: GraphStore, user_id: str, item_id: str, max_reasons: int = 3) -> Explanation | None:
    """Why ``item_id`` fits ``user_id`` under the active live model (``None`` when the active model is not live).

    Raises:
        UnknownUserError / UnknownItemError: No such user or item.
    """
    served = recommend_live(store, user_id, 1, Filters(include_ids=[item_id], exclude_seen=False))
    if served is None:
        return None
    if not served.recs.items:
        raise UnknownItemError(f"unknown item {item_id!r} in dataset {store.dataset!r}")
    return explain(store, served, max_reasons).get(item_id)


def explain(store: GraphStore, served: Served, max_reasons: int = 3, *, as_dicts: bool = False) -> dict[str, Any]:
    """Explanations that fit how ``served`` was made (:class:`Explanation` models; with ``as_dicts``, for a
    live answer, the same as plain dicts in the models' field order, ready to serialise)."""
    if not served.recs.items:
        return {}
    if served.live:
        return explain_live(store, served.recs, served.history, user_id=served.user_id, max_reasons=max_reasons, gen=served.gen,
                            loaded_at=served.loaded_at, as_dicts=as_dicts)
    return explain_embedding(store.driver, [i.item_id for i in served.recs.items], dataset=store.dataset, user_id=served.user_id,
                             anchor_item_ids=served.anchors, max_reasons=max_reasons, database=store.database)


__all__ = ["Served", "explain", "explain_item_live", "recommend", "recommend_cold_start", "recommend_live", "similar_items", "warm"]
