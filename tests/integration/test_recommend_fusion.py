"""Offline and online agree: a tiny trained fusion checkpoint published into the real Neo4j is served
with the score-level fusion, and the served top k equals the offline fused ranking (the scorer of
``gnn.fusion``: full score rows standardised per user, combined per activity bucket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from api.cli.publish_cmd import publish_checkpoint
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.embeddings import fold_in
from gnn.fusion.coldstart import FusionCheckpoint, HeadConfig, fit_cold_head, save_fusion_checkpoint
from gnn.fusion.feature import FusedLightGCN
from gnn.fusion.scores import FusionWeights, ScoreFusion, content_profiles, popularity_scores, standardise
from gnn.text.encoder import EncoderConfig
from gnn.text.recipe import TextRecipe
from gnn.train import train_model
from graph.connection import read
from graph.recommend import Filters, Interaction, recommend, recommend_dot, recommend_indexed, record_interaction
from graph.recommend_fixtures import GENRES, load_toy_graph
from graphrec.settings import get_settings
from graphrec.snapshot import SplitSpec, make_snapshot

DS = "toy-fusion"
SPARSE = {f"u{j}" for j in range(8)}  # keep 4 training interactions: the "<= 5 interactions" bucket
FUSION = ScoreFusion(bounds=[5], buckets=[FusionWeights(graph=0.4, content=0.4, popularity=0.2),
                                          FusionWeights(graph=0.6, content=0.2, popularity=0.2)])
TINY = TrainConfig(model="lightgcn_fused", embedding_dim=16, num_layers=2, lr=0.05, reg=1e-4, batch_size=64, epochs=8, eval_every=4,
                   patience=0, num_negatives=2, loss="bpr", seed=0, device="cpu")


def _train_checkpoint(g: dict[str, Any], out: Path) -> Path:
    users = g["users"]
    items = g["items"]
    rng = np.random.default_rng(1)
    onehot = np.array([[1.0 if x in it["genres"] else 0.0 for x in GENRES] for it in items])
    text = np.hstack([onehot, 0.4 * rng.normal(size=(len(items), 8))]).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    uidx = {u: n for n, u in enumerate(users)}
    iidx = {it["id"]: n for n, it in enumerate(items)}
    rows = []
    for u in users:
        mine = sorted((r for r in g["interactions"] if r["u"] == u), key=lambda r: (r["ts"], r["i"]))
        n_train = 4 if u in SPARSE else 10
        for pos, r in enumerate(mine):
            rows.append({"user_idx": uidx[u], "item_idx": iidx[r["i"]], "timestamp": r["ts"], "split": "train" if pos < n_train else "val"})
    snap = make_snapshot(DS, "test", SplitSpec(name="per_user_temporal"), pd.DataFrame({"id": users}),
                         pd.DataFrame({"id": [it["id"] for it in items], "title": [it["title"] for it in items]}), pd.DataFrame(rows))
    data = InteractionData.from_snapshot(snap)
    torch.manual_seed(0)
    model = FusedLightGCN(data.num_users, data.num_items, [text.shape[1]], ["text"], embedding_dim=16, num_layers=2)
    model.set_features([text])
    model.set_interactions(data.train.users, data.train.items)
    train_model(model, data, TINY, progress=False)
    model = model.cpu().eval()
    with torch.no_grad():
        ue, ie = (x.numpy() for x in model.embeddings())
    head = fit_cold_head(text, ie, ue, data.train.users.numpy(), data.train.items.numpy(), HeadConfig(epochs=2))
    meta = FusionCheckpoint(model_type=model.model_type, init_kwargs=model.init_kwargs, encoder=EncoderConfig(device="cpu"),
                            encoder_identity="test-no-encoder", recipe=TextRecipe(), item_ids=list(data.items.ids),
                            user_ids=list(data.users.ids), score_fusion=FUSION)
    return save_fusion_checkpoint(out, model, head, meta)


def _offline(path: Path) -> dict[str, Any]:
    """The offline default ranking's scores, computed like gnn.fusion.pipeline / experiment do."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    meta = FusionCheckpoint.model_validate(payload["meta"])
    U, I = payload["user_embeddings"], payload["item_embeddings"]
    T = payload["state_dict"]["features_0"]
    tu, ti = payload["state_dict"]["train_users"].numpy(), payload["state_dict"]["train_items"].numpy()
    hist = [ti[tu == u] for u in range(len(meta.user_ids))]
    prof = torch.from_numpy(content_profiles(hist, T.numpy()))
    pop = torch.from_numpy(popularity_scores(ti, len(meta.item_ids)))
    parts = {"graph": U @ I.T, "content": prof @ T.T, "popularity": pop.unsqueeze(0).repeat(len(meta.user_ids), 1)}
    z = {k: standardise(v) for k, v in parts.items()}
    fused = meta.score_fusion.combine(z, np.array([len(h) for h in hist])).numpy()
    return {"fused": fused, "users": {u: n for n, u in enumerate(meta.user_ids)}, "items": list(meta.item_ids),
            "graph": (U @ I.T).numpy(), "content": (prof @ T.T).numpy(), "pop": pop.numpy(), "hist": [len(h) for h in hist],
            "U": U.numpy().astype(np.float64), "I": I.numpy().astype(np.float64)}


@pytest.fixture(scope="module")
def fused(neo4j_driver: Any, neo4j_info: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = neo4j_info.database
    g = load_toy_graph(neo4j_driver, DS, n_users=30, n_items=80, per_user=12, seed=4, database=db)
    path = _train_checkpoint(g, tmp_path_factory.mktemp("fusion-ckpt"))
    report = publish_checkpoint(neo4j_driver, path.parent, DS, database=db, settings=get_settings())
    seen: dict[str, set[str]] = {}
    for row in g["interactions"]:
        seen.setdefault(row["u"], set()).add(row["i"])
    yield {"driver": neo4j_driver, "db": db, "graph": g, "path": path, "report": report, "offline": _offline(path), "seen": seen,
           "items": {i["id"]: i for i in g["items"]}}


def _expected(fx: dict[str, Any], user: str, k: int, skip: set[str], keep: Any = lambda it: True) -> list[tuple[str, float]]:
    off = fx["offline"]
    row = off["fused"][off["users"][user]]
    cand = [(i, float(row[n])) for n, i in enumerate(off["items"]) if i not in skip and keep(fx["items"][i])]
    return sorted(cand, key=lambda t: (-t[1], t[0]))[:k]


def _assert_same_ranking(served: list[Any], expected: list[tuple[str, float]], offline_score: Any) -> None:
    """Same scores position by position, and each served item really has that offline score (so only
    numerical near-ties, < 1e-4, could swap two items)."""
    assert len(served) == len(expected)
    for it, (iid, score) in zip(served, expected):
        assert it.score == pytest.approx(score, rel=1e-4, abs=1e-4), (it.item_id, iid)
        assert it.score == pytest.approx(offline_score(it.item_id), rel=1e-4, abs=1e-4)


def _fused_of(fx: dict[str, Any], user: str) -> Any:
    off = fx["offline"]
    row = off["fused"][off["users"][user]]
    return lambda item: float(row[off["items"].index(item)])


def test_publish_writes_the_fusion_tables(fused: dict[str, Any]) -> None:
    r = fused["report"]
    assert r.score_fusion is not None and r.score_fusion["users_with_stats"] == 30 and r.score_fusion["items_with_popularity"] == 80
    assert r.model.text_index and r.model.fusion_weights == [0.4, 0.4, 0.2, 0.6, 0.2, 0.2] and r.model.fusion_bounds == [5]
    rows = read(fused["driver"], "SHOW INDEXES YIELD name, state WHERE name = $n RETURN state", {"n": r.model.text_index}, fused["db"])
    assert rows and rows[0]["state"] == "ONLINE"


@pytest.mark.parametrize("lists", [True, False], ids=["serving-list", "index-search"])
@pytest.mark.parametrize("user", ["u0", "u3", "u9", "u21"])  # two sparse (<= 5) users, two others
def test_served_ranking_equals_offline_fused_ranking(fused: dict[str, Any], user: str, lists: bool) -> None:
    source = recommend if lists else recommend_indexed  # the serving list answers when it covers the request
    recs = source(fused["driver"], user, 10, dataset=DS, database=fused["db"])
    assert recs.ranking == "fusion" and recs.exact is True
    assert recs.candidates == ("list" if lists else "index")
    off = fused["offline"]
    u = off["users"][user]
    assert recs.history_size == off["hist"][u] and (recs.history_size <= 5) == (user in SPARSE)
    _assert_same_ranking(recs.items, _expected(fused, user, 10, fused["seen"][user]), _fused_of(fused, user))
    w = FUSION.buckets[0 if user in SPARSE else 1]
    for it in recs.items:
        j = off["items"].index(it.item_id)
        sp = it.score_parts
        assert sp is not None and (sp.w_graph, sp.w_content, sp.w_popularity) == (w.graph, w.content, w.popularity)
        assert sp.graph == pytest.approx(float(off["graph"][u, j]), rel=1e-4, abs=1e-4)
        assert sp.content == pytest.approx(float(off["content"][u, j]), abs=1e-4)
        assert sp.popularity == pytest.approx(float(off["pop"][j]), abs=1e-6)
        assert it.score == pytest.approx(w.graph * sp.graph_z + w.content * sp.content_z + w.popularity * sp.popularity_z, abs=1e-9)


def test_fusion_with_filters_and_fresh_feedback(fused: dict[str, Any]) -> None:
    d, db = fused["driver"], fused["db"]
    keep = lambda it: bool({"Crime", "Drama"} & set(it["genres"])) and 1975 <= it["year"] <= 2010  # noqa: E731
    f = Filters(genres=["Crime", "Drama"], year_min=1975, year_max=2010)
    recs = recommend(d, "u12", 5, f, dataset=DS, database=db)
    _assert_same_ranking(recs.items, _expected(fused, "u12", 5, fused["seen"]["u12"], keep), _fused_of(fused, "u12"))
    # include list from the bottom of the fused ranking: the candidate sources grow until they are found
    tail = [i for i, _ in _expected(fused, "u12", 80, fused["seen"]["u12"])][-3:]
    inc = recommend(d, "u12", 3, Filters(include_ids=tail), dataset=DS, database=db)
    assert sorted(i.item_id for i in inc.items) == sorted(tail) and inc.exact
    top = recommend(d, "u14", 5, dataset=DS, database=db).items[0].item_id
    record_interaction(d, Interaction(user_id="u14", item_id=top, rating=5.0), dataset=DS, database=db)
    again = recommend(d, "u14", 5, dataset=DS, database=db)
    assert again.candidates == "index" and again.ranking == "fusion"  # the serving list predates the like
    # the like is folded into the graph vector (graph.recommend.USER_VECTOR); the user's statistics stay
    off = fused["offline"]
    u, j = off["users"]["u14"], off["items"].index(top)
    n = sum(1 for r in fused["graph"]["interactions"] if r["u"] == "u14" and r["r"] >= 4.0)
    folded = fold_in(off["U"][u], off["I"][j:j + 1], n)
    w_graph = again.items[0].score_parts.w_graph
    shifted = off["fused"][u] + w_graph * (off["I"] @ folded - off["graph"][u]) / float(np.std(off["graph"][u], ddof=1))
    skip = fused["seen"]["u14"] | {top}
    expected = sorted([(i, float(shifted[n_])) for n_, i in enumerate(off["items"]) if i not in skip], key=lambda t: (-t[1], t[0]))[:5]
    _assert_same_ranking(again.items, expected, lambda i: float(shifted[off["items"].index(i)]))
    for it in again.items:
        assert it.score_parts.graph == pytest.approx(float(off["I"][off["items"].index(it.item_id)] @ folded), rel=1e-4, abs=1e-4)


def test_graph_only_path_and_unfused_republish(fused: dict[str, Any]) -> None:
    d, db = fused["driver"], fused["db"]
    off = fused["offline"]
    u = off["users"]["u9"]
    plain = recommend_dot(d, "u9", 5, dataset=DS, database=db)
    dots = sorted(((i, float(off["graph"][u, n])) for n, i in enumerate(off["items"]) if i not in fused["seen"]["u9"]), key=lambda t: -t[1])[:5]
    dot_of = lambda item: float(off["graph"][u, off["items"].index(item)])  # noqa: E731
    _assert_same_ranking(plain.items, dots, dot_of)
    assert plain.ranking == "graph" and all(i.score_parts is None for i in plain.items)
    # republishing the same checkpoint without score fusion: the pointer loses every fusion property,
    # the previous publication's tables and text index are dropped, serving is the dot product again
    old = fused["report"].model
    rep = publish_checkpoint(d, fused["path"].parent, DS, database=db, settings=get_settings(), score_fusion=False)
    assert rep.score_fusion is None and rep.model.fusion_prop is None
    recs = recommend(d, "u9", 5, dataset=DS, database=db)
    assert recs.ranking == "graph" and recs.exact is None
    _assert_same_ranking(recs.items, dots, dot_of)
    left = read(d, "MATCH (n) WHERE n[$a] IS NOT NULL OR n[$b] IS NOT NULL OR n[$c] IS NOT NULL RETURN count(n) AS c",
                {"a": old.fusion_prop, "b": old.pop_prop, "c": old.profile_prop}, db)
    assert left[0]["c"] == 0
    idx = read(d, "SHOW INDEXES YIELD name WHERE name = $n RETURN name", {"n": old.text_index}, db)
    assert idx == []


def test_short_serving_lists_fall_back_to_the_index_search(fused: dict[str, Any]) -> None:
    """Lists of 6 items: a request they cover is answered from the list, one whose filters leave fewer
    than k of them searches the indexes; both give the offline fused ranking."""
    d, db = fused["driver"], fused["db"]
    old = publish_checkpoint(d, fused["path"].parent, DS, database=db, settings=get_settings()).model
    rep = publish_checkpoint(d, fused["path"].parent, DS, database=db, settings=get_settings(), serving_list_size=6)
    assert rep.serving_lists == 30 and rep.model.top_size == 6
    stored = read(d, "MATCH (u:User {dataset: $ds, id: 'u21'}) RETURN u[$p] AS top", {"ds": DS, "p": rep.model.top_prop}, db)[0]["top"]
    seen = fused["seen"]["u21"]
    assert stored == [i for i, _ in _expected(fused, "u21", 6, seen)]
    short = recommend(d, "u21", 4, dataset=DS, database=db)
    assert short.candidates == "list" and short.candidates_searched == 6
    _assert_same_ranking(short.items, _expected(fused, "u21", 4, seen), _fused_of(fused, "u21"))
    # a genre with fewer than 4 items in the list but at least 4 unseen in the catalogue
    genre = next(g for g in GENRES if sum(g in fused["items"][i]["genres"] for i in stored) < 4
                 and len(_expected(fused, "u21", 4, seen, lambda it, g=g: g in it["genres"])) == 4)
    keep = lambda it: genre in it["genres"]  # noqa: E731
    filtered = recommend(d, "u21", 4, Filters(genres=[genre]), dataset=DS, database=db)
    assert filtered.candidates == "index"
    _assert_same_ranking(filtered.items, _expected(fused, "u21", 4, seen, keep), _fused_of(fused, "u21"))
    gone = read(d, "MATCH (u:User) WHERE u[$p] IS NOT NULL RETURN count(u) AS c", {"p": old.top_prop}, db)
    assert gone[0]["c"] == 0  # the previous publication's lists are dropped with it
