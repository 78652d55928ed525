"""The GPU runs the same code path as the CPU: propagation, a training run and the evaluator.

Marked ``gpu``: ``make test`` deselects them (CI has no GPU); ``make test-gpu`` runs them on a CUDA
machine, where they fail (not skip) if CUDA is missing.
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn.models import LightGCN

from gnn.config import default_recipe, paper_recipe
from gnn.data import InteractionData
from gnn.evaluate import Evaluator
from gnn.propagation import normalized_adjacency, propagate_rows
from gnn.train import create_model, train_model

from .conftest import random_data

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    assert torch.cuda.is_available(), "gpu tests need a CUDA device (run them with `make test-gpu` on a GPU machine)"


def test_propagate_rows_cuda_equals_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 50, (400,), generator=g)
    items = torch.randint(0, 70, (400,), generator=g)
    model = LightGCN(120, 16, 3, normalize=False)
    idx = [torch.randint(0, 120, (32,), generator=g), torch.randint(0, 120, (32, 4), generator=g)]
    weights = [torch.randn(32, 16, generator=g), torch.randn(32, 4, 16, generator=g)]
    results = {}
    for dev in (torch.device("cpu"), CUDA):
        m = LightGCN(120, 16, 3, normalize=False).to(dev)
        m.load_state_dict(model.state_dict())
        adj = normalized_adjacency(users.to(dev), items.to(dev), 50, 70)
        finals, egos = propagate_rows(m, m.embedding.weight, adj, [i.to(dev) for i in idx])
        loss = sum((f * w.to(dev)).sum() for f, w in zip(finals, weights)) + sum(e.square().sum() for e in egos)
        loss.backward()
        results[dev.type] = ([f.detach().cpu() for f in finals], m.embedding.weight.grad.cpu())
    for a, b in zip(results["cpu"][0], results["cuda"][0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["cpu"][1], results["cuda"][1], rtol=1e-5, atol=1e-6)


def _train(data: InteractionData, recipe: str, epochs: int) -> tuple[list[float], dict[str, float]]:
    make = paper_recipe if recipe == "paper" else default_recipe
    config = make(epochs=epochs, eval_every=epochs, device="cuda", batch_size=64, num_negatives=8, seed=7)
    model = create_model(config, data)
    result = train_model(model, data, config, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    return [r.loss for r in result.history], result.best_metrics


@pytest.mark.parametrize("recipe", ["paper", "default"])
def test_training_on_cuda_is_repeatable_and_learns(recipe: str) -> None:
    data = random_data(num_users=60, num_items=40, seed=1)
    losses_a, metrics_a = _train(data, recipe, epochs=15)
    losses_b, metrics_b = _train(data, recipe, epochs=15)
    # same seed, same device: the same run (atomics in scatter-adds may reorder float sums)
    torch.testing.assert_close(torch.tensor(losses_a), torch.tensor(losses_b), rtol=1e-4, atol=1e-6)
    assert metrics_a.keys() == metrics_b.keys()
    assert losses_a[-1] < losses_a[0]


def test_evaluator_cuda_equals_cpu() -> None:
    data = random_data(num_users=60, num_items=40, seed=2)
    config = paper_recipe(epochs=3, eval_every=3, device="cpu", batch_size=64)
    model = create_model(config, data)
    train_model(model, data, config, progress=False)
    on_cpu = Evaluator(data, "test", ks=[5, 20], device=torch.device("cpu")).evaluate(model)
    on_gpu = Evaluator(data, "test", ks=[5, 20], device=CUDA).evaluate(model.to(CUDA))
    assert on_cpu.num_users == on_gpu.num_users > 0
    for key, value in on_cpu.metrics.items():
        assert on_gpu.metrics[key] == pytest.approx(value, abs=1e-6), key


def test_resumed_cuda_run_follows_the_uninterrupted_one_and_cpu_state_moves_to_cuda(tmp_path) -> None:  # noqa: ANN001
    from gnn.train_state import load_train_state

    data = random_data(num_users=60, num_items=40, seed=3)
    config = paper_recipe(epochs=6, eval_every=3, device="cuda", batch_size=64)
    whole = train_model(create_model(config, data), data, config, progress=False)
    train_model(create_model(config, data), data, config, progress=False, state_path=tmp_path / "gpu",
                on_epoch=lambda rec: rec.epoch == 4)
    state = load_train_state(tmp_path / "gpu")
    assert state.generator_device == "cuda"
    rest = train_model(create_model(config, data), data, config, progress=False, resume=state)
    # the generator state carries over, so the draws are the same; float sums may reorder on CUDA
    torch.testing.assert_close(
        torch.tensor([r.loss for r in rest.history]), torch.tensor([r.loss for r in whole.history]), rtol=1e-4, atol=1e-6
    )
    # a CPU state continues on CUDA with a reseeded generator, and says so
    cpu_config = config.with_options(device="cpu")
    train_model(create_model(cpu_config, data), data, cpu_config, progress=False, state_path=tmp_path / "cpu",
                on_epoch=lambda rec: rec.epoch == 2)
    moved = train_model(create_model(config, data), data, config, progress=False, resume=load_train_state(tmp_path / "cpu"))
    assert moved.segments[-1]["generator_reseeded"] is True and moved.segments[-1]["device"].startswith("cuda")
    assert [r.epoch for r in moved.history] == [1, 2, 3, 4, 5, 6]


def test_step_profile_on_cuda_reports_kernel_time() -> None:
    from gnn.step_profile import PHASES, profile_training_steps

    data = random_data(num_users=60, num_items=50)
    config = paper_recipe(batch_size=32, device="cuda", embedding_dim=16)
    result = profile_training_steps(create_model(config, data), data, config, steps=5, warmup=2, profiled_steps=3, top=5)
    assert result.device.startswith("cuda") and result.projected_epoch_seconds > 0
    assert [p.name for p in result.phases] == list(PHASES)
    # the forward and backward phases launch kernels: their device time is measured
    assert all(p.device_ms > 0 for p in result.phases[:2])
    assert result.top_ops and result.top_ops[0].self_device_ms > 0
