"""The negative sampler never returns a positive and is seeded."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ModelError
from gnn.sampling import NegativeSampler


@pytest.mark.parametrize("density", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("num_negatives", [1, 4])
def test_never_positive(density: float, num_negatives: int) -> None:
    g = torch.Generator().manual_seed(0)
    nu, ni = 25, 40
    mask = torch.rand(nu, ni, generator=g) < density
    mask[:, 0] = False  # every user has at least one negative
    users, items = mask.nonzero(as_tuple=True)
    sampler = NegativeSampler(users, items, nu, ni, max_rounds=2)  # few rounds: exercises the exact fallback
    batch = users.repeat(3)
    neg = sampler.sample(batch, num_negatives, torch.Generator().manual_seed(1))
    assert neg.shape == (batch.numel(), num_negatives)
    assert neg.min() >= 0 and neg.max() < ni
    assert not mask[batch.unsqueeze(1).expand_as(neg), neg].any()


def test_exact_fallback_is_uniform_over_free_items() -> None:
    # user 0 has all items but 3 and 7 -> every negative must be 3 or 7, both drawn
    ni = 10
    items = torch.tensor([i for i in range(ni) if i not in (3, 7)])
    sampler = NegativeSampler(torch.zeros_like(items), items, 1, ni, max_rounds=0)
    neg = sampler.sample(torch.zeros(2000, dtype=torch.long), 1, torch.Generator().manual_seed(0)).squeeze(1)
    assert set(neg.tolist()) == {3, 7}
    assert 0.4 < (neg == 3).float().mean().item() < 0.6


def test_seeded_and_full_user_rejected() -> None:
    users = torch.tensor([0, 0, 1])
    items = torch.tensor([0, 1, 0])
    s = NegativeSampler(users, items, 2, 2)
    a = s.sample(torch.tensor([1, 1, 1]), 2, torch.Generator().manual_seed(5))
    b = s.sample(torch.tensor([1, 1, 1]), 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and (a == 1).all()
    with pytest.raises(ModelError):
        s.sample(torch.tensor([0]), 1)


def test_positive_sampling_draws_each_users_items_uniformly() -> None:
    # user 0: items {1, 4, 6}; user 1: item {2}; user 2: items {0, 3}
    users = torch.tensor([0, 0, 0, 1, 2, 2])
    items = torch.tensor([6, 1, 4, 2, 3, 0])
    sampler = NegativeSampler(users, items, 3, 8)
    draws = torch.tensor([0, 1, 2]).repeat(3000)
    got = sampler.sample_positives(draws, torch.Generator().manual_seed(0))
    assert got.shape == draws.shape
    for u, owned in ((0, {1, 4, 6}), (1, {2}), (2, {0, 3})):
        picked = got[draws == u]
        assert set(picked.tolist()) == owned
        share = torch.bincount(picked, minlength=8)[sorted(owned)].float() / picked.numel()
        assert torch.allclose(share, torch.full_like(share, 1 / len(owned)), atol=0.05)
    again = sampler.sample_positives(draws, torch.Generator().manual_seed(0))
    assert torch.equal(got, again)
