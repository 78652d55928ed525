"""Resumable training: a run stopped and resumed equals one never stopped (same device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from graphrec.errors import InvalidArgumentError, ModelError
from gnn.config import TrainConfig, paper_recipe
from gnn.data import InteractionData
from gnn.train import EpochRecord, TrainResult, create_model, train_model
from gnn.train_state import (
    STATE_FILE,
    TrainState,
    load_train_state,
    restore_generator,
    save_train_state,
    state_path,
)


def _config(**overrides: object) -> TrainConfig:
    options: dict[str, object] = dict(
        epochs=6, eval_every=3, batch_size=32, device="cpu", patience=0, embedding_dim=8, num_layers=2, lr=0.01
    )
    return paper_recipe(**{**options, **overrides})


def _train(data: InteractionData, config: TrainConfig, **kwargs: object) -> TrainResult:
    return train_model(create_model(config, data), data, config, progress=False, **kwargs)  # type: ignore[arg-type]


def _stop_at(epoch: int):  # noqa: ANN202 - a callback
    def on_epoch(rec: EpochRecord) -> bool:
        return rec.epoch == epoch

    return on_epoch


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"positive_sampling": "interaction", "num_negatives": 3},
        {"positive_sampling": "user_distinct", "init_std": None, "batch_size": 16},
        {"loss": "softmax", "shared_negatives": True, "num_negatives": 8, "reg": 0.1},
    ],
    ids=["paper", "interaction", "user_distinct", "shared_softmax"],
)
def test_stopped_and_resumed_run_equals_uninterrupted(tiny_data: InteractionData, tmp_path: Path, overrides: dict[str, object]) -> None:
    config = _config(**overrides)
    whole = _train(tiny_data, config)

    first = _train(tiny_data, config, state_path=tmp_path, on_epoch=_stop_at(4))
    assert [r.epoch for r in first.history] == [1, 2, 3, 4]
    state = load_train_state(tmp_path)
    assert state.epoch == 4 and state.segments[0]["last_epoch"] == 4
    rest = _train(tiny_data, config, state_path=tmp_path, resume=state)

    assert [r.epoch for r in rest.history] == [1, 2, 3, 4, 5, 6]
    assert [r.loss for r in rest.history] == [r.loss for r in whole.history]
    assert [r.metrics for r in rest.history] == [r.metrics for r in whole.history]
    assert (rest.best_epoch, rest.best_metrics) == (whole.best_epoch, whole.best_metrics)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), rest.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [(s["first_epoch"], s["last_epoch"]) for s in rest.segments] == [(1, 4), (5, 6)]
    assert load_train_state(tmp_path).epoch == 6


def test_resume_keeps_the_best_state_from_before_the_stop(tiny_data: InteractionData, tmp_path: Path) -> None:
    # evaluations at 1..6; the best may come before the stop, and the restored model must be it
    config = _config(eval_every=1)
    whole = _train(tiny_data, config)
    _train(tiny_data, config, state_path=tmp_path, on_epoch=_stop_at(2))
    state = load_train_state(tmp_path)
    assert state.best_state is not None and state.best_epoch in (1, 2)
    rest = _train(tiny_data, config, resume=state)
    assert rest.best_epoch == whole.best_epoch
    for a, b in zip(whole.model.state_dict().values(), rest.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_other_settings_or_data(tiny_data: InteractionData, tmp_path: Path) -> None:
    config = _config()
    _train(tiny_data, config, state_path=tmp_path, on_epoch=_stop_at(2))
    state = load_train_state(tmp_path)
    with pytest.raises(InvalidArgumentError, match=r"lr: 0\.01 -> 0\.02"):
        state.check_resumable(config.with_options(lr=0.02), tiny_data.snapshot_hash)
    with pytest.raises(InvalidArgumentError, match="snapshot"):
        state.check_resumable(config, "0" * 64)
    with pytest.raises(InvalidArgumentError, match="more epochs"):
        state.check_resumable(config.with_options(epochs=2), tiny_data.snapshot_hash)
    # fields that only change the schedule may differ
    state.check_resumable(config.with_options(epochs=10, eval_every=5, patience=3), tiny_data.snapshot_hash)


def test_state_file_round_trip_and_errors(tiny_data: InteractionData, tmp_path: Path) -> None:
    assert state_path(tmp_path) == tmp_path / STATE_FILE
    assert state_path(tmp_path / "run") == tmp_path / "run" / STATE_FILE
    assert state_path(tmp_path / "run.pt") == tmp_path / "run.pt"
    config = _config()
    _train(tiny_data, config, state_path=tmp_path / "run.pt", on_epoch=_stop_at(1))
    state = load_train_state(tmp_path / "run.pt")
    assert state.config == config.model_dump() and state.snapshot_hash == tiny_data.snapshot_hash
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left behind
    with pytest.raises(ModelError, match="cannot read"):
        load_train_state(tmp_path / "missing.pt")
    for junk in (b"", b"junk", b"not a state"):
        (tmp_path / "bad.pt").write_bytes(junk)
        with pytest.raises(ModelError, match="cannot read"):
            load_train_state(tmp_path / "bad.pt")
    state.format_version = 99
    save_train_state(tmp_path / "old.pt", state)
    with pytest.raises(ModelError, match="format 99"):
        load_train_state(tmp_path / "old.pt")


def test_generator_is_restored_on_the_same_device_and_reseeded_on_another() -> None:
    gen = torch.Generator().manual_seed(7)
    torch.rand(5, generator=gen)
    state = TrainState(
        epoch=3, config={}, snapshot_hash="h", model_state={}, optimizer_state={}, generator_state=gen.get_state(),
        generator_device="cpu", best_value=0.0, best_epoch=None, best_metrics={}, best_state=None, bad_evals=0,
    )
    expected = torch.rand(5, generator=gen)
    fresh = torch.Generator()
    assert restore_generator(fresh, state, seed=1) is True
    assert torch.equal(torch.rand(5, generator=fresh), expected)
    state.generator_device = "cuda"
    a, b = torch.Generator(), torch.Generator()
    assert restore_generator(a, state, seed=1) is False and restore_generator(b, state, seed=1) is False
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
