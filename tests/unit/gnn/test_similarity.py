"""The ``similarity`` option (dot / cosine): scores, training, checkpoints, export, old configs, CLI options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.errors import InvalidArgumentError, ModelError
from gnn.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from gnn.config import TrainConfig, default_recipe
from gnn.data import InteractionData
from gnn.embeddings import export_embeddings
from gnn.models import RecModel, build_model
from gnn.losses import l2_ego
from gnn.train import create_model, train_model

SMALL = dict(
    embedding_dim=8, num_layers=2, batch_size=64, epochs=3, eval_every=1, lr=0.01, device="cpu",
    loss="softmax", num_negatives=4, temperature=0.1,
)


def _config(kind: str, similarity: str) -> TrainConfig:
    return TrainConfig(model=kind, similarity=similarity, **SMALL)


def _trained(kind: str, data: InteractionData, similarity: str = "cosine") -> RecModel:
    config = _config(kind, similarity)
    return train_model(create_model(config, data), data, config, progress=False).model


@pytest.mark.parametrize("kind", ["lightgcn", "mf"])
def test_cosine_scores_are_normalised_dot_products(tiny_data: InteractionData, kind: str) -> None:
    # same seed => same layer-0 weights; the cosine model only normalises the final embeddings
    dot = create_model(_config(kind, "dot"), tiny_data)
    cos = create_model(_config(kind, "cosine"), tiny_data)
    for a, b in zip(dot.state_dict().values(), cos.state_dict().values()):
        assert torch.equal(a, b)
    users = torch.arange(tiny_data.num_users)
    with torch.no_grad():
        u, i = dot.embeddings()
    expected = F.normalize(u, dim=-1) @ F.normalize(i, dim=-1).t()
    got = cos.scorer()(users)
    torch.testing.assert_close(got, expected)
    assert float(got.abs().max()) <= 1.0 + 1e-5
    # the dot model's scores are not bounded by 1 in general, and differ from the cosine ones
    assert not torch.allclose(dot.scorer()(users), got)
    # pairwise forward agrees with the scorer
    items = torch.randint(0, tiny_data.num_items, (users.numel(),), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(cos(users, items), got[users, items])


def test_cosine_batch_embeddings_match_generic_gathers(tiny_data: InteractionData) -> None:
    """The fast propagate_rows path, normalised, equals normalising the full embeddings (values and grads)."""
    model = create_model(_config("lightgcn", "cosine"), tiny_data)
    g = torch.Generator().manual_seed(1)
    users = torch.randint(0, tiny_data.num_users, (16,), generator=g)
    pos = torch.randint(0, tiny_data.num_items, (16,), generator=g)
    neg = torch.randint(0, tiny_data.num_items, (16, 3), generator=g)
    weights = [torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g), torch.randn(16, 3, 8, generator=g)]

    def run(fast: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        model.zero_grad(set_to_none=True)
        emb = model.batch_embeddings(users, pos, neg) if fast else RecModel.batch_embeddings(model, users, pos, neg)
        finals = [emb.users, emb.pos, emb.neg]
        sum(((w * f).sum() for w, f in zip(weights, finals)), torch.zeros(())).backward()
        return [f.detach() for f in finals], model.lightgcn.embedding.weight.grad.clone()

    fast, grad_fast = run(True)
    slow, grad_slow = run(False)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a.norm(dim=-1), torch.ones(a.shape[:-1]))
    torch.testing.assert_close(grad_fast, grad_slow)


def test_cosine_fixed_seed_gives_identical_runs(tiny_data: InteractionData) -> None:
    config = _config("lightgcn", "cosine")
    runs = [train_model(create_model(config, tiny_data), tiny_data, config, progress=False) for _ in range(2)]
    assert [r.loss for r in runs[0].history] == [r.loss for r in runs[1].history]
    assert all(np.isfinite(r.loss) for r in runs[0].history)
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["lightgcn", "mf"])
def test_cosine_checkpoint_roundtrip(tmp_path: Path, tiny_data: InteractionData, kind: str) -> None:
    model = _trained(kind, tiny_data)
    config = _config(kind, "cosine")
    path = save_checkpoint(
        tmp_path / kind, model, users=tiny_data.users, items=tiny_data.items, dataset="tiny", snapshot_hash="h", config=config
    )
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt.model, RecModel) and ckpt.model.similarity == "cosine"
    assert ckpt.meta.model_kwargs["similarity"] == "cosine" and ckpt.config == config
    users = torch.arange(tiny_data.num_users)
    torch.testing.assert_close(ckpt.model.scorer()(users), model.scorer()(users), rtol=0, atol=0)


def test_export_cosine_embeddings_are_unit_vectors(tmp_path: Path, tiny_data: InteractionData) -> None:
    model = _trained("lightgcn", tiny_data)
    path = save_checkpoint(tmp_path / "m", model, users=tiny_data.users, items=tiny_data.items, dataset="tiny", snapshot_hash="h")
    emb = export_embeddings(path)
    assert emb.metadata["similarity"] == "cosine"
    np.testing.assert_allclose(np.linalg.norm(emb.user_vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb.item_vectors, axis=1), 1.0, rtol=1e-5)
    scores = emb.user_vectors @ emb.item_vectors.T
    np.testing.assert_allclose(scores, model.scorer()(torch.arange(tiny_data.num_users)).numpy(), rtol=1e-5, atol=1e-6)


def test_old_config_and_checkpoint_without_similarity_load_as_dot(tmp_path: Path, tiny_data: InteractionData) -> None:
    model = _trained("lightgcn", tiny_data, similarity="dot")
    config = _config("lightgcn", "dot")
    path = save_checkpoint(
        tmp_path / "old", model, users=tiny_data.users, items=tiny_data.items, dataset="tiny", snapshot_hash="h", config=config
    )
    # rewrite it as a checkpoint written before the option existed: no "similarity" anywhere
    blob = torch.load(path / CHECKPOINT_FILE, weights_only=True)
    del blob["meta"]["model_kwargs"]["similarity"]
    del blob["meta"]["config"]["similarity"]
    torch.save(blob, path / CHECKPOINT_FILE)
    raw = json.loads((path / "config.json").read_text())
    del raw["similarity"]
    (path / "config.json").write_text(json.dumps(raw))

    old_config = TrainConfig.load(path / "config.json")
    assert old_config.similarity == "dot" and old_config == config
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt.model, RecModel) and ckpt.model.similarity == "dot"
    assert "similarity" not in ckpt.meta.model_kwargs and ckpt.config == config
    users = torch.arange(tiny_data.num_users)
    torch.testing.assert_close(ckpt.model.scorer()(users), model.scorer()(users), rtol=0, atol=0)


def test_unknown_similarity_is_rejected(tiny_data: InteractionData) -> None:
    with pytest.raises(InvalidArgumentError):
        default_recipe(similarity="euclid")
    with pytest.raises(ModelError):
        build_model("lightgcn", num_users=3, num_items=4, similarity="euclid")


def test_config_similarity_roundtrip(tmp_path: Path) -> None:
    config = default_recipe(similarity="cosine", temperature=0.1)
    assert TrainConfig.load(config.save(tmp_path / "c.json")) == config
    assert config.model_kwargs()["similarity"] == "cosine"


def test_shared_negatives_l2_equals_the_expanded_form() -> None:
    g = torch.Generator().manual_seed(0)
    users0, pos0, neg0 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g)
    expanded = l2_ego(users0, pos0, neg0.unsqueeze(0).expand(6, 5, 4))
    torch.testing.assert_close(l2_ego(users0, pos0, neg0, shared=True), expanded)


@pytest.mark.parametrize("kind,loss", [("lightgcn", "softmax"), ("mf", "softmax"), ("lightgcn", "bpr")])
def test_shared_negatives_train_deterministically(tiny_data: InteractionData, kind: str, loss: str) -> None:
    config = TrainConfig(
        model=kind, similarity="cosine", shared_negatives=True, **{**SMALL, "loss": loss, "num_negatives": 32, "epochs": 4}
    )
    runs = [train_model(create_model(config, tiny_data), tiny_data, config, progress=False) for _ in range(2)]
    losses = [r.loss for r in runs[0].history]
    assert losses == [r.loss for r in runs[1].history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)


def test_shared_negative_equal_to_the_positive_is_masked(tiny_data: InteractionData, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every shared negative equal to the batch's single positive item, no logit remains but the positive's."""
    from gnn import train as train_mod

    item = int(tiny_data.train.items[0])
    keep = tiny_data.train.items == item
    tiny_data.train.users, tiny_data.train.items = tiny_data.train.users[keep], tiny_data.train.items[keep]
    seen: list[torch.Tensor] = []
    real = train_mod.make_loss

    def spy_loss(name: str, temperature: float = 0.2) -> torch.nn.Module:
        inner = real(name, temperature)

        class Spy(torch.nn.Module):
            def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
                seen.append(neg.detach())
                return inner(pos, neg)

        return Spy()

    monkeypatch.setattr(train_mod, "make_loss", spy_loss)
    monkeypatch.setattr(train_mod.torch, "randint", lambda low, high, size, **kw: torch.full(size, item, dtype=torch.long))
    config = TrainConfig(similarity="cosine", shared_negatives=True, **{**SMALL, "num_negatives": 3, "epochs": 1})
    res = train_model(create_model(config, tiny_data), tiny_data, config, progress=False)
    assert seen and all(bool(torch.isneginf(n).all()) for n in seen)
    assert np.isfinite(res.history[0].loss)
