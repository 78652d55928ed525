"""The step profile: it runs the training step, projects the epoch, and splits the step into phases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from graphrec.errors import InvalidArgumentError
from gnn.config import TrainConfig, paper_recipe
from gnn.data import InteractionData
from gnn.losses import make_loss
from gnn.step_profile import PHASES, profile_training_steps
from gnn.train import TrainingPairs, create_model, epoch_batches, make_optimizer, training_step


def _config(**overrides: object) -> TrainConfig:
    return paper_recipe(**{**dict(batch_size=16, device="cpu", embedding_dim=8, num_layers=2), **overrides})


def test_profile_times_the_step_projects_the_epoch_and_splits_the_phases(tiny_data: InteractionData, tmp_path: Path) -> None:
    config = _config(num_negatives=2)
    trace = tmp_path / "trace" / "steps.json"
    result = profile_training_steps(
        create_model(config, tiny_data), tiny_data, config, steps=5, warmup=1, profiled_steps=3, top=4, trace_path=trace
    )
    pairs = TrainingPairs.from_data(tiny_data, torch.device("cpu"))
    assert result.steps_per_epoch == -(-pairs.users.numel() // 16) > 1
    assert len(result.step_ms) == 5 and min(result.step_ms) > 0 and result.back_to_back_ms > 0
    low, high = result.step_spread_ms
    assert low <= result.step_median_ms <= high
    assert result.projected_epoch_seconds == pytest.approx(
        result.epoch_sampling_seconds + result.steps_per_epoch * result.back_to_back_ms / 1000.0
    )
    assert [p.name for p in result.phases] == list(PHASES)
    assert all(p.calls == 1.0 and p.cpu_ms > 0 for p in result.phases)
    # the largest ops first, the step's own ranges and profiler markers left out
    assert 1 <= len(result.top_ops) <= 4
    self_ms = [op.self_cpu_ms for op in result.top_ops]
    assert self_ms == sorted(self_ms, reverse=True)
    assert not any(op.name.startswith(("graphrec.", "ProfilerStep")) for op in result.top_ops)
    names = {e.get("name") for e in json.loads(trace.read_text())["traceEvents"]}
    assert set(PHASES) <= names
    report = json.loads(json.dumps(result.to_json()))
    assert report["trace"] == str(trace) and report["projected_epoch_seconds"] == result.projected_epoch_seconds


def test_annotated_step_equals_the_plain_step(tiny_data: InteractionData) -> None:
    config = _config()
    results = []
    for annotate in (False, True):
        model = create_model(config, tiny_data)
        opt = make_optimizer(model, config.lr)
        gen = torch.Generator().manual_seed(0)
        pairs = TrainingPairs.from_data(tiny_data, torch.device("cpu"))
        losses = [
            training_step(model, opt, make_loss("bpr"), u, p, n, config.reg, annotate=annotate)
            for u, p, n in epoch_batches(pairs, config, gen)
        ]
        results.append((torch.stack(losses), [t.detach().clone() for t in model.parameters()]))
    (loss_a, params_a), (loss_b, params_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b, strict=True))


@pytest.mark.parametrize("shared", [False, True], ids=["per_positive", "shared"])
def test_epoch_batches_cover_the_epoch_in_steps(tiny_data: InteractionData, shared: bool) -> None:
    config = _config(positive_sampling="interaction", num_negatives=3, shared_negatives=shared)
    pairs = TrainingPairs.from_data(tiny_data, torch.device("cpu"))
    batches = list(epoch_batches(pairs, config, torch.Generator().manual_seed(1)))
    assert len(batches) == pairs.steps(16)
    users = torch.cat([b[0] for b in batches])
    items = torch.cat([b[1] for b in batches])
    # interaction sampling: every training pair once
    assert sorted(zip(users.tolist(), items.tolist())) == sorted(zip(pairs.users.tolist(), pairs.items.tolist()))
    for u, _, neg in batches:
        if shared:
            assert neg.shape == (3,)
        else:
            assert neg.shape == (u.numel(), 3)
            assert not pairs.sampler.is_positive(u.unsqueeze(1).expand_as(neg), neg).any()


def test_profile_rejects_empty_counts(tiny_data: InteractionData) -> None:
    config = _config()
    with pytest.raises(InvalidArgumentError):
        profile_training_steps(create_model(config, tiny_data), tiny_data, config, steps=0)
