"""Feature-level fusion, score-level fusion and cold start on a tiny graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.errors import InvalidArgumentError, ModelError, UnknownItemError
from graphrec.snapshot import Snapshot
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.evaluate import Evaluator
from gnn.fusion.coldstart import ColdStart, FusionCheckpoint, HeadConfig, fit_cold_head, save_fusion_checkpoint
from gnn.fusion.feature import FusedLightGCN
from gnn.fusion.scores import content_profiles, fit_score_fusion, popularity_scores, standardise, weight_grid
from gnn.models import build_model
from gnn.text.encoder import TextEncoder
from gnn.text.recipe import TextRecipe, build_item_texts
from gnn.train import train_model

TINY = TrainConfig(embedding_dim=16, num_layers=2, lr=0.05, reg=1e-4, batch_size=64, epochs=30, eval_every=10,
                   patience=0, num_negatives=2, loss="bpr", seed=0, device="cpu")


@pytest.fixture(scope="module")
def text_vectors(taste_snapshot: Snapshot, encoder: TextEncoder) -> np.ndarray:
    return encoder.encode(build_item_texts(taste_snapshot.items))


def _fused(data: InteractionData, text_vectors: np.ndarray, extra: np.ndarray | None = None) -> FusedLightGCN:
    blocks = [text_vectors] + ([extra] if extra is not None else [])
    m = FusedLightGCN(data.num_users, data.num_items, [b.shape[1] for b in blocks], embedding_dim=16, num_layers=2)
    m.set_features(blocks)
    m.set_interactions(data.train.users, data.train.items)
    return m


@pytest.mark.parametrize("with_extra", [False, True])
def test_feature_fusion_trains_and_beats_untrained(taste_snapshot: Snapshot, text_vectors: np.ndarray, with_extra: bool) -> None:
    data = InteractionData.from_snapshot(taste_snapshot)
    extra = np.random.default_rng(0).normal(size=(data.num_items, 8)).astype(np.float32) if with_extra else None
    torch.manual_seed(0)
    model = _fused(data, text_vectors, extra)
    ev = Evaluator(data, "test", ks=[5], device="cpu")
    before = ev.evaluate(model).metrics["recall@5"]
    result = train_model(model, data, TINY, progress=False)
    after = ev.evaluate(model).metrics["recall@5"]
    assert result.history[-1].loss < result.history[0].loss
    assert after > before
    assert after >= 0.5  # tastes are perfectly separated by the text
    u, i = model.embeddings()
    assert u.shape == (24, 16) and i.shape == (12, 16)
    u0, i0 = model.ego(torch.tensor([0, 1]), torch.tensor([[0, 1], [2, 3]]))
    assert u0.shape == (2, 16) and i0.shape == (2, 2, 16)


def test_feature_fusion_checks_feature_shapes(taste_snapshot: Snapshot) -> None:
    m = FusedLightGCN(24, 12, [4])
    with pytest.raises(ModelError, match="shape"):
        m.set_features([np.zeros((11, 4))])
    with pytest.raises(ModelError):
        FusedLightGCN(24, 12, [])


def test_fused_model_round_trips_through_state_dict(taste_snapshot: Snapshot, text_vectors: np.ndarray) -> None:
    data = InteractionData.from_snapshot(taste_snapshot)
    m = _fused(data, text_vectors)
    clone = build_model("lightgcn_fused", **m.init_kwargs)
    clone.load_state_dict(m.state_dict())
    torch.testing.assert_close(clone.embeddings()[1], m.embeddings()[1])


def test_score_fusion_fits_weights_on_validation(taste_snapshot: Snapshot, text_vectors: np.ndarray) -> None:
    data = InteractionData.from_snapshot(taste_snapshot)
    tu, ti = data.train.users.numpy(), data.train.items.numpy()
    hist = [ti[tu == u] for u in range(data.num_users)]
    profiles = torch.from_numpy(content_profiles(hist, text_vectors))
    content = profiles @ torch.from_numpy(text_vectors).T
    noise = torch.randn(data.num_users, data.num_items, generator=torch.Generator().manual_seed(0))
    pop = torch.from_numpy(popularity_scores(ti, data.num_items)).expand(data.num_users, -1)
    parts = {"graph": standardise(noise), "content": standardise(content), "popularity": standardise(pop)}
    ev = Evaluator(data, "val", ks=[5], metrics=["ndcg"], device="cpu")

    def evaluate(scores: torch.Tensor, rows: np.ndarray) -> float:
        full = torch.full((data.num_users, data.num_items), -1e9)
        full[torch.as_tensor(rows)] = scores
        return ev.evaluate(lambda users: full[users]).metrics["ndcg@5"]

    sizes = np.bincount(tu, minlength=data.num_users)
    fusion = fit_score_fusion(parts, sizes, evaluate, bounds=(2,), step=0.25)
    w = fusion.buckets[-1]
    assert w.content > w.graph  # the informative signal wins over noise
    assert fusion.validation[-1]["ndcg"] > 0.5
    assert len(weight_grid(0.5)) == 6
    with pytest.raises(InvalidArgumentError):
        fit_score_fusion({"graph": parts["graph"]}, sizes, evaluate)


@pytest.fixture(scope="module")
def trained_checkpoint(taste_snapshot: Snapshot, text_vectors: np.ndarray, encoder: TextEncoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = InteractionData.from_snapshot(taste_snapshot)
    torch.manual_seed(0)
    model = _fused(data, text_vectors)
    train_model(model, data, TINY, progress=False)
    with torch.no_grad():
        ue, ie = (x.numpy() for x in model.embeddings())
    head = fit_cold_head(text_vectors, ie, ue, data.train.users.numpy(), data.train.items.numpy(), HeadConfig(epochs=50, batch_size=64))
    meta = FusionCheckpoint(model_type=model.model_type, init_kwargs=model.init_kwargs, encoder=encoder.config,
                            encoder_identity=encoder.identity, recipe=TextRecipe(), item_ids=data.items.ids, user_ids=data.users.ids)
    out = tmp_path_factory.mktemp("fusion")
    save_fusion_checkpoint(out, model, head, meta)
    return out


def test_new_item_after_training_ranks_high_for_matching_user(trained_checkpoint: Path, encoder: TextEncoder) -> None:
    cs = ColdStart.from_checkpoint(trained_checkpoint, encoder=encoder)
    new = cs.item_vectors(["An astronaut explores a new planet in a rocket ship",
                           {"title": "A couple falls in love at a wedding", "genres": ["Romance"]}])
    assert new.shape == (2, 16)
    space_users = [u for u in range(24) if u % 2 == 0]
    romance_users = [u for u in range(24) if u % 2 == 1]
    s_space = cs.user_embeddings[space_users] @ new.T
    s_romance = cs.user_embeddings[romance_users] @ new.T
    assert (s_space[:, 0] > s_space[:, 1]).mean() >= 0.9
    assert (s_romance[:, 1] > s_romance[:, 0]).mean() >= 0.9
    # the new space item ranks in the top half of the catalogue for space users
    catalogue = cs.user_embeddings[space_users] @ cs.item_embeddings.T
    rank = (catalogue > s_space[:, [0]]).sum(1)
    assert np.median(rank) < 6


def test_user_vector_from_liked_items_and_text(trained_checkpoint: Path, encoder: TextEncoder) -> None:
    cs = ColdStart.from_checkpoint(trained_checkpoint, encoder=encoder)
    space_item, romance_item = cs.item_vectors(["A rocket to the stars", "A love story in Rome"])
    u_liked = cs.user_vector(liked_item_ids=["i0", "i1"])
    assert u_liked @ space_item > u_liked @ romance_item
    u_text = cs.user_vector(text="romantic love stories")
    assert u_text @ romance_item > u_text @ space_item
    both = cs.user_vector(liked_item_ids=["i6"], text="a wedding romance")
    assert both.shape == (16,)
    with pytest.raises(UnknownItemError):
        cs.user_vector(liked_item_ids=["nope"])
    with pytest.raises(InvalidArgumentError):
        cs.user_vector()


def test_cold_start_rejects_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        ColdStart.from_checkpoint(tmp_path)


def test_fit_fusion_writes_a_checkpoint_cold_start_can_serve(taste_snapshot: Snapshot, tmp_path: Path) -> None:
    from gnn.fusion.pipeline import FuseConfig, fit_fusion

    cfg = FuseConfig(train=TINY.model_copy(update={"epochs": 4, "eval_every": 2}), head=HeadConfig(epochs=2))
    path, summary = fit_fusion(taste_snapshot, tmp_path / "ck", cfg, cache_dir=tmp_path / "cache", progress=False)
    assert path.name == "fusion.pt" and summary["best_epoch"] in (2, 4)
    cs = ColdStart.from_checkpoint(path.parent, cache_dir=tmp_path / "cache")
    assert cs.meta.item_ids == taste_snapshot.items["id"].tolist()
    assert cs.item_embeddings.shape == (12, 16) and cs.user_embeddings.shape == (24, 16)
    assert cs.item_vectors(["A rocket to Mars"]).shape == (1, 16)
    assert cs.meta.score_fusion is not None and len(cs.meta.score_fusion.buckets) == 2
