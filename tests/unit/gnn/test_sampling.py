"""The negative sampler never returns a positive and is seeded."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ModelError
from gnn.sampling import NegativeSampler, distinct_rows, epoch_positives


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


@pytest.mark.parametrize(("num", "cols"), [(10, 3), (10, 8), (7, 7)])  # redraw branch, permutation branch, all
def test_distinct_rows_are_distinct_and_uniform(num: int, cols: int) -> None:
    rows = 6000
    got = distinct_rows(num, rows, cols, torch.Generator().manual_seed(0))
    assert got.shape == (rows, cols) and got.min() >= 0 and got.max() < num
    assert (got.sort(dim=1).values.diff(dim=1) > 0).all()  # no repeat within a row
    share = torch.bincount(got.reshape(-1), minlength=num).float() / (rows * cols)
    assert torch.allclose(share, torch.full_like(share, 1 / num), atol=0.01)
    pairs = torch.zeros(num, num)  # co-occurrence of two labels in a row: equal for every pair
    for a in range(cols):
        for b in range(cols):
            if a != b:
                pairs.index_put_((got[:, a], got[:, b]), torch.ones(rows), accumulate=True)
    off = pairs[~torch.eye(num, dtype=torch.bool)] / rows
    expected = cols * (cols - 1) / (num * (num - 1))
    assert torch.allclose(off, torch.full_like(off, expected), atol=0.03)
    again = distinct_rows(num, rows, cols, torch.Generator().manual_seed(0))
    assert torch.equal(got, again)
    with pytest.raises(ModelError):
        distinct_rows(num, 1, num + 1)


def _pairs() -> tuple[NegativeSampler, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    nu, ni = 30, 12
    mask = torch.rand(nu, ni, generator=g) < 0.3
    mask[:, 0], mask[:, 1] = True, False  # every user has a positive and a negative
    users, items = mask.nonzero(as_tuple=True)
    return NegativeSampler(users, items, nu, ni), users, items


def test_epoch_positives_user_distinct_fills_batches_with_distinct_users() -> None:
    sampler, users, items = _pairs()
    n, batch = users.numel(), 8
    bu, bi = epoch_positives("user_distinct", sampler, users, items, users.unique(), batch, torch.Generator().manual_seed(0))
    steps = (n + batch - 1) // batch
    assert bu.shape == bi.shape == (steps * batch,)
    per_step = bu.reshape(steps, batch)
    assert (per_step.sort(dim=1).values.diff(dim=1) > 0).all()
    assert sampler.is_positive(bu, bi).all()
    # more users per batch than users: drawn with replacement, still one training item each
    wide_u, wide_i = epoch_positives("user_distinct", sampler, users, items, users.unique(), 64, torch.Generator().manual_seed(0))
    assert wide_u.numel() == ((n + 63) // 64) * 64 and sampler.is_positive(wide_u, wide_i).all()


def test_epoch_positives_other_modes() -> None:
    sampler, users, items = _pairs()
    iu, ii = epoch_positives("interaction", sampler, users, items, users.unique(), 8, torch.Generator().manual_seed(0))
    key = lambda u, i: sorted((u * 100 + i).tolist())  # noqa: E731
    assert key(iu, ii) == key(users, items)  # every training pair exactly once
    uu, ui = epoch_positives("user", sampler, users, items, users.unique(), 8, torch.Generator().manual_seed(0))
    assert uu.numel() == users.numel() and sampler.is_positive(uu, ui).all()
    with pytest.raises(ModelError):
        epoch_positives("item", sampler, users, items, users.unique(), 8)
