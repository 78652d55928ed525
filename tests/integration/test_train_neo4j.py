"""From the real Neo4j to a trained LightGCN: load MovieLens (a user subset), export a snapshot,
train a few epochs on the CPU, and beat MostPopular on the held-out part."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from graph.export import export_snapshot
from graph.load import LoadOptions, load_frames
from graphrec.snapshot import SplitSpec
from gnn.baselines import MostPopular
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.evaluate import Evaluator
from gnn.train import create_model, train_model
from loaders.movielens import read_movielens

DATASET = "lgcn_it"


def _small_movielens(n_users: int = 120) -> Any:
    frames = read_movielens()
    keep = set(frames.users["id"].astype(str).iloc[:n_users])
    inter = frames.interactions[frames.interactions["user_id"].astype(str).isin(keep)]
    tags = frames.tag_applications[frames.tag_applications["user_id"].astype(str).isin(keep)]
    users = frames.users[frames.users["id"].astype(str).isin(keep)]
    return replace(frames, name=DATASET, users=users, interactions=inter, tag_applications=tags)


def test_train_from_graph_beats_most_popular(clean_graph: Any, neo4j_info: Any) -> None:
    frames = _small_movielens()
    load_frames(clean_graph, frames, LoadOptions(mode="replace", progress=False, database=neo4j_info.database))
    spec = SplitSpec(name="per_user_random", params={"test_fraction": 0.2, "val_fraction": 0.1})
    snap = export_snapshot(clean_graph, DATASET, spec, neo4j_info.database, seed=0)
    data = InteractionData.from_snapshot(snap)
    assert data.num_users == len(frames.users)
    assert len(data.train) + len(data.val) + len(data.test) == len(frames.interactions)

    config = TrainConfig(embedding_dim=32, num_layers=2, lr=0.01, batch_size=1024, epochs=10, eval_every=5, device="cpu")
    result = train_model(create_model(config, data), data, config, progress=False)
    evaluator = Evaluator(data, "test", ks=[20], device="cpu")
    lightgcn = evaluator.evaluate(result.model)

    pop = MostPopular(data.num_users, data.num_items)
    pop.set_interactions(data.train.users, data.train.items)
    pop.fit()
    baseline = evaluator.evaluate(pop)
    assert lightgcn["ndcg@20"] > baseline["ndcg@20"]
    assert lightgcn["recall@20"] > baseline["recall@20"]
