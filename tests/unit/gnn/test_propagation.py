"""The fast sparse propagation equals PyG's default edge_index propagation (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn.models import LightGCN

from gnn.propagation import bipartite_edge_index, normalized_adjacency, propagate, propagate_rows


def _graph(num_users: int, num_items: int, num_edges: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, num_users, (num_edges,), generator=g)
    items = torch.randint(0, num_items, (num_edges,), generator=g)
    key = torch.unique(users * num_items + items)  # PyG's default path counts duplicates; dedupe first
    return key // num_items, key % num_items


@pytest.mark.parametrize("num_layers", [0, 1, 3])
@pytest.mark.parametrize("sizes", [(5, 7, 20), (30, 12, 80)])
def test_sparse_equals_default(num_layers: int, sizes: tuple[int, int, int]) -> None:
    nu, ni, ne = sizes
    users, items = _graph(nu, ni, ne, seed=num_layers)
    torch.manual_seed(0)
    default = LightGCN(nu + ni, 8, num_layers).double()
    fast = LightGCN(nu + ni, 8, num_layers, normalize=False).double()
    fast.load_state_dict(default.state_dict())

    edge_index = bipartite_edge_index(users, items, nu)
    ref = default.get_embedding(edge_index)
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    out = propagate(fast, fast.embedding.weight, adj)
    assert out.shape == (nu + ni, 8)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    # the PyG convs fed the sparse adjacency directly (autograd backward) agree too
    torch.testing.assert_close(fast.get_embedding(adj), ref, rtol=1e-10, atol=1e-12)

    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(fast.embedding.weight.grad, default.embedding.weight.grad, rtol=1e-10, atol=1e-12)


def test_adjacency_symmetric_and_normalised() -> None:
    users = torch.tensor([0, 0, 1, 1, 1])
    items = torch.tensor([0, 1, 0, 0, 2])  # (1, 0) duplicated: counted once
    adj = normalized_adjacency(users, items, 2, 3).to_dense()
    torch.testing.assert_close(adj, adj.t())
    # deg(u0)=2, deg(u1)=2, deg(i0)=2, deg(i1)=1, deg(i2)=1
    assert adj[0, 2].item() == pytest.approx(1 / 2)
    assert adj[0, 3].item() == pytest.approx(1 / (2**0.5))
    assert adj[1, 4].item() == pytest.approx(1 / (2**0.5))
    assert adj[0, 4].item() == 0.0


def test_propagate_accepts_any_x0() -> None:
    users, items = _graph(6, 4, 15, seed=1)
    model = LightGCN(10, 4, 2, normalize=False)
    adj = normalized_adjacency(users, items, 6, 4)
    x0 = torch.randn(10, 4, requires_grad=True)
    out = propagate(model, x0, adj)
    expected = x0 * model.alpha[0]
    x = x0
    dense = adj.to_dense()
    for layer in range(2):
        x = dense @ x
        expected = expected + x * model.alpha[layer + 1]
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert x0.grad is not None and x0.grad.shape == x0.shape


@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_propagate_rows_equals_gathering_propagate(num_layers: int) -> None:
    """One fused gather/scatter gives the values and gradients of ``propagate`` then indexing."""
    nu, ni = 9, 7
    users, items = _graph(nu, ni, 30, seed=3)
    model = LightGCN(nu + ni, 5, num_layers, normalize=False).double()
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    # repeated rows on purpose: their gradients must accumulate
    idx = (torch.tensor([0, 3, 3, 8]), torch.randint(nu, nu + ni, (4,), generator=g), torch.randint(nu, nu + ni, (4, 3), generator=g))
    weights = [torch.randn(*i.shape, 5, generator=g, dtype=torch.float64) for i in idx + idx]

    x_ref = torch.randn(nu + ni, 5, generator=g, dtype=torch.float64, requires_grad=True)
    x_new = x_ref.detach().clone().requires_grad_(True)
    out = propagate(model, x_ref, adj, symmetric=False)  # layer-by-layer through the PyG convs
    ref_rows = [out[i] for i in idx] + [x_ref[i] for i in idx]
    finals, egos = propagate_rows(model, x_new, adj, idx)
    assert [t.shape for t in finals + egos] == [t.shape for t in ref_rows]
    for a, b in zip(finals + egos, ref_rows):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    sum((r * w).sum() for r, w in zip(ref_rows, weights)).backward()
    sum((r * w).sum() for r, w in zip(finals + egos, weights)).backward()
    torch.testing.assert_close(x_new.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


def test_propagate_rows_without_ego_and_unused_outputs() -> None:
    nu, ni = 4, 6
    users, items = _graph(nu, ni, 14, seed=2)
    model = LightGCN(nu + ni, 3, 2, normalize=False).double()
    adj = normalized_adjacency(users, items, nu, ni, dtype=torch.float64)
    x = torch.randn(nu + ni, 3, dtype=torch.float64, requires_grad=True)
    idx = (torch.tensor([1, 2]), torch.tensor([5, 9]))
    finals, egos = propagate_rows(model, x, adj, idx, with_ego=False)
    assert egos == []
    finals[0].sum().backward()  # the second output gets no gradient
    x2 = x.detach().clone().requires_grad_(True)
    propagate(model, x2, adj)[idx[0]].sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_cached_layer_weights_follow_load_state_dict() -> None:
    """The layer weights are cached per step, but a checkpoint with other weights is honoured."""
    users, items = _graph(6, 5, 20, seed=3)
    adj = normalized_adjacency(users, items, 6, 5, dtype=torch.float64)
    model = LightGCN(11, 4, 2, normalize=False).double()
    first = propagate(model, model.embedding.weight, adj)
    state = model.state_dict()
    state["alpha"] = torch.tensor([0.5, 0.3, 0.2], dtype=state["alpha"].dtype)
    model.load_state_dict(state)
    second = propagate(model, model.embedding.weight, adj)
    x = model.embedding.weight.detach()
    expected = 0.5 * x + 0.3 * (adj @ x) + 0.2 * (adj @ (adj @ x))
    torch.testing.assert_close(second.detach(), expected)
    assert not torch.allclose(first.detach(), second.detach())
