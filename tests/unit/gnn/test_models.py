"""Trainer determinism, checkpoints, configs, embedding export and recommender contracts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.errors import InvalidArgumentError, ModelError, UnknownUserError
import gnn.filters  # noqa: F401  (registers gfcf, chebycf, ease)
from gnn.baselines import ItemKNN, MostPopular
from gnn.checkpoint import load_checkpoint, new_version, save_checkpoint
from gnn.config import TrainConfig, default_recipe, paper_recipe, parse_init_std
from gnn.data import InteractionData
from gnn.embeddings import export_embeddings
from gnn.evaluate import Evaluator
from gnn.models import MODELS, LightGCNRecommender, Recommender, build_model, init_id_embeddings
from gnn.recommend import TopK
from gnn.train import create_model, train_model

from .conftest import random_data

SMALL = dict(embedding_dim=8, num_layers=2, batch_size=64, epochs=3, eval_every=1, lr=0.01, device="cpu")


def _fitted(kind: str, data: InteractionData) -> Recommender:
    """A trained / fitted recommender of each registered kind."""
    if kind in ("lightgcn", "mf"):
        config = TrainConfig(model=kind, **SMALL)
        model = create_model(config, data)
        return train_model(model, data, config, progress=False).model
    model = build_model(kind, num_users=data.num_users, num_items=data.num_items)
    model.set_interactions(data.train.users, data.train.items)
    model.fit()
    return model


KINDS = ["lightgcn", "mf", "most_popular", "item_knn", "gfcf", "chebycf", "ease"]


def test_all_models_registered() -> None:
    assert set(KINDS) <= set(MODELS)


@pytest.mark.parametrize("loss,negs", [("bpr", 1), ("bpr", 3), ("softmax", 4)])
def test_fixed_seed_gives_identical_runs(tiny_data: InteractionData, loss: str, negs: int) -> None:
    config = TrainConfig(loss=loss, num_negatives=negs, **SMALL)
    runs = []
    for _ in range(2):
        res = train_model(create_model(config, tiny_data), tiny_data, config, progress=False)
        runs.append(res)
    assert [r.loss for r in runs[0].history] == [r.loss for r in runs[1].history]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)
    assert all(np.isfinite(r.loss) for r in runs[0].history)
    assert runs[0].best_epoch is not None and "ndcg@20" in runs[0].best_metrics


@pytest.mark.parametrize("positive_sampling", ["interaction", "user", "user_distinct"])
def test_training_lowers_loss(tiny_data: InteractionData, positive_sampling: str) -> None:
    config = TrainConfig(**{**SMALL, "epochs": 8, "eval_every": 8, "positive_sampling": positive_sampling})
    res = train_model(create_model(config, tiny_data), tiny_data, config, progress=False)
    assert res.history[-1].loss < res.history[0].loss


def test_user_sampling_is_seeded_and_differs_from_interaction_sampling(tiny_data: InteractionData) -> None:
    runs = {}
    for mode in ("user", "user", "interaction"):
        config = TrainConfig(**{**SMALL, "epochs": 3, "eval_every": 3, "positive_sampling": mode})
        res = train_model(create_model(config, tiny_data), tiny_data, config, progress=False)
        runs.setdefault(mode, []).append([r.loss for r in res.history])
    assert runs["user"][0] == runs["user"][1]
    assert runs["user"][0] != runs["interaction"][0]


def test_early_stopping_stops(tiny_data: InteractionData) -> None:
    config = TrainConfig(**{**SMALL, "epochs": 50, "lr": 1e-6, "patience": 1, "monitor": "ndcg@20"})
    res = train_model(create_model(config, tiny_data), tiny_data, config, progress=False)
    assert len(res.history) < 50 and res.stopped_early


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_roundtrip_identical_scores(tmp_path: Path, tiny_data: InteractionData, kind: str) -> None:
    model = _fitted(kind, tiny_data)
    config = TrainConfig(model=kind, **SMALL) if model.trainable else None
    path = save_checkpoint(
        tmp_path / kind, model, users=tiny_data.users, items=tiny_data.items, dataset="tiny",
        snapshot_hash="abc", config=config, val_metrics={"ndcg@20": 0.5},
    )
    ckpt = load_checkpoint(path)
    assert type(ckpt.model) is type(model)
    assert ckpt.meta.snapshot_hash == "abc" and ckpt.meta.val_metrics == {"ndcg@20": 0.5}
    users = torch.arange(tiny_data.num_users)
    torch.testing.assert_close(ckpt.model.scorer()(users), model.scorer()(users), rtol=0, atol=0)
    assert ckpt.users == tiny_data.users and ckpt.items == tiny_data.items
    if config is not None:
        assert ckpt.config == config


@pytest.mark.parametrize("content", [b"", b"junk", b"not a checkpoint at all"])
def test_unreadable_checkpoint_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.pt").write_bytes(content)
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_recommender_contract(tiny_data: InteractionData, kind: str) -> None:
    model = _fitted(kind, tiny_data)
    top = TopK(model, tiny_data.users, tiny_data.items)
    # unknown user
    with pytest.raises(UnknownUserError):
        top.recommend("nobody", 5)
    with pytest.raises(InvalidArgumentError):
        top.recommend("u0", 0)
    # known user: no seen item, sorted scores, at most k
    recs = top.recommend("u0", 5)
    seen = set(tiny_data.items.lookup(top.history(0).numpy()))
    assert 0 < len(recs) <= 5 and not seen & {r.item_id for r in recs}
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    # k larger than the catalogue: every unseen item, once
    everything = top.recommend("u0", 10_000)
    assert len(everything) == tiny_data.num_items - len(seen)
    assert len({r.item_id for r in everything}) == len(everything)
    # the evaluator accepts every recommender
    res = Evaluator(tiny_data, "test", ks=[5], device="cpu").evaluate(model)
    assert 0.0 <= res["recall@5"] <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_user_with_empty_history(kind: str) -> None:
    data = random_data(num_users=12, num_items=15, seed=3)
    # drop every training interaction of user 0 (known to the vocabulary, no history)
    keep = data.train.users != 0
    data.train.users, data.train.items = data.train.users[keep], data.train.items[keep]
    model = _fitted(kind, data)
    recs = TopK(model, data.users, data.items).recommend("u0", 100)
    assert len(recs) == data.num_items
    assert all(np.isfinite(r.score) for r in recs)


def test_export_embeddings(tmp_path: Path, tiny_data: InteractionData) -> None:
    model = _fitted("lightgcn", tiny_data)
    path = save_checkpoint(tmp_path / "m", model, users=tiny_data.users, items=tiny_data.items, dataset="tiny", snapshot_hash="h", version="v1")
    emb = export_embeddings(path)
    assert emb.model_version == "v1" and emb.user_vectors.dtype == np.float32
    assert emb.user_vectors.shape == (tiny_data.num_users, 8) and emb.item_vectors.shape == (tiny_data.num_items, 8)
    assert emb.user_ids == tiny_data.users.ids and emb.metadata["snapshot_hash"] == "h"
    scores = emb.user_vectors @ emb.item_vectors.T
    np.testing.assert_allclose(scores, model.scorer()(torch.arange(tiny_data.num_users)).numpy(), rtol=1e-5, atol=1e-6)
    pop = MostPopular(tiny_data.num_users, tiny_data.num_items)
    path2 = save_checkpoint(tmp_path / "p", pop, users=tiny_data.users, items=tiny_data.items, dataset="tiny", snapshot_hash="h")
    with pytest.raises(ModelError):
        export_embeddings(path2)


@pytest.mark.parametrize("factory", [paper_recipe, default_recipe, TrainConfig])
def test_config_save_reload_unchanged(tmp_path: Path, factory) -> None:  # type: ignore[no-untyped-def]
    config = factory()
    loaded = TrainConfig.load(config.save(tmp_path / "c.json"))
    assert loaded == config and loaded.model_dump() == config.model_dump()
    assert all(f.description for f in TrainConfig.model_fields.values())  # every field documented


def test_config_with_options_keeps_a_none_init_and_parses_it() -> None:
    xavier = paper_recipe().with_options(init_std=None, batch_size=64)  # None: "not given", the field keeps its value
    assert (xavier.init_std, xavier.batch_size) == (0.1, 64)
    xavier.init_std = parse_init_std("Xavier")
    kept = xavier.with_options(lr=0.01)
    assert kept.init_std is None and kept.lr == 0.01
    assert parse_init_std("0.05") == 0.05
    for bad in ("0", "-1", "he"):
        with pytest.raises(InvalidArgumentError):
            parse_init_std(bad)
    with pytest.raises(InvalidArgumentError):
        kept.with_options(positive_sampling="item")


def test_xavier_init_is_per_table_as_lightgcn_tensorflow() -> None:
    torch.manual_seed(0)
    nu, ni, d = 3000, 500, 64
    weight = torch.empty(nu + ni, d)
    init_id_embeddings(weight, nu, None)
    for rows, n in ((weight[:nu], nu), (weight[nu:], ni)):
        bound = math.sqrt(6 / (n + d))
        assert rows.abs().max() <= bound and rows.abs().max() > 0.95 * bound
        assert abs(rows.std().item() - bound / math.sqrt(3)) < 0.02 * bound
    init_id_embeddings(weight, nu, 0.1)
    assert abs(weight.std().item() - 0.1) < 0.002 and abs(weight.mean().item()) < 0.002
    model = LightGCNRecommender(nu, ni, d, init_std=None)
    assert model.lightgcn.embedding.weight[nu:].abs().max() > math.sqrt(6 / (nu + d))  # item bound, not the user one


def test_config_rejects_bad_values() -> None:
    with pytest.raises(InvalidArgumentError):
        TrainConfig.from_options(lr=-1.0)
    with pytest.raises(InvalidArgumentError):
        TrainConfig.from_options(monitor="ndcg")


def test_item_knn_similarity_is_cosine() -> None:
    data = random_data(num_users=10, num_items=6, seed=1)
    knn = ItemKNN(data.num_users, data.num_items, k_neighbors=100)
    knn.set_interactions(data.train.users, data.train.items)
    knn.fit()
    r = torch.zeros(data.num_users, data.num_items)
    r[data.train.users, data.train.items] = 1.0
    co = r.t() @ r
    norm = r.sum(0).sqrt()
    expected = co / (norm[:, None] * norm[None, :] + 1e-12)
    expected.fill_diagonal_(0.0)
    got = torch.from_numpy(knn.similarity().toarray())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _batch_model(kind: str, data: InteractionData) -> torch.nn.Module:
    if kind == "lightgcn_fused":
        from gnn.fusion.feature import FusedLightGCN

        model = FusedLightGCN(data.num_users, data.num_items, [6], ["text"], embedding_dim=8, num_layers=2, id_dropout=0.0)
        model.set_features([np.random.default_rng(0).normal(size=(data.num_items, 6))])
    else:
        model = build_model(kind, num_users=data.num_users, num_items=data.num_items, embedding_dim=8)
    model.set_interactions(data.train.users, data.train.items)
    return model


@pytest.mark.parametrize("kind", ["lightgcn", "mf", "lightgcn_fused"])
def test_batch_embeddings_match_generic_gathers(tiny_data: InteractionData, kind: str) -> None:
    """A model's fast ``batch_embeddings`` gives the generic gathers' values and gradients."""
    from gnn.models import RecModel

    model = _batch_model(kind, tiny_data)
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, tiny_data.num_users, (16,), generator=g)
    pos = torch.randint(0, tiny_data.num_items, (16,), generator=g)
    neg = torch.randint(0, tiny_data.num_items, (16, 3), generator=g)
    grads = []
    for fn in (type(model).batch_embeddings, RecModel.batch_embeddings):
        model.zero_grad(set_to_none=True)
        emb = fn(model, users, pos, neg)
        torch.manual_seed(7)
        loss = sum((t * torch.randn(t.shape, dtype=t.dtype)).sum() for t in emb)
        loss.backward()
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, [t.detach() for t in emb]))
    (g_fast, e_fast), (g_ref, e_ref) = grads
    for a, b in zip(e_fast, e_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert g_fast.keys() == g_ref.keys() and g_fast
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-5, atol=1e-7)


def test_model_versions_sort_by_time_and_differ_within_a_second() -> None:
    import re
    import time

    first = new_version("live")
    time.sleep(0.002)
    second = new_version("live")
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z-live", first) and first < second


def test_fold_in_turns_the_user_towards_new_likes_and_keeps_the_length() -> None:
    from gnn.embeddings import fold_in

    rng = np.random.default_rng(0)
    u, v = rng.normal(size=4), rng.normal(size=(3, 4))
    assert np.array_equal(fold_in(u, np.zeros((0, 4)), 7), u)  # nothing new: the stored vector, exactly
    assert np.array_equal(fold_in(u, np.zeros((2, 4)), 7), u)  # zero vectors carry no direction
    out = fold_in(u, v, 7)
    assert np.linalg.norm(out) == pytest.approx(np.linalg.norm(u))
    mean_dir = (v / np.linalg.norm(v, axis=1, keepdims=True)).sum(axis=0)
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(out, mean_dir) > cos(u, mean_dir)  # turned towards the new likes
    assert cos(fold_in(u, v, 0), mean_dir) == pytest.approx(1.0)  # nothing liked before: only the new likes
    assert cos(fold_in(u, v, 10_000), u) == pytest.approx(1.0, abs=1e-6)  # one like among many barely moves it
    dense = 7 * u / np.linalg.norm(u) + mean_dir  # the rule written out
    np.testing.assert_allclose(out, dense / np.linalg.norm(dense) * np.linalg.norm(u))
