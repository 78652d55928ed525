"""Named hold-outs that carve a validation part out of a training part (for splits without one).

Model selection needs a validation part. When a split has none (LightGCN's train / test files, a
75/25 split), :func:`carve_validation` moves a seeded random fraction of each user's *training*
interactions into ``val`` and leaves ``test`` untouched; the graph-filter selection and the trainer
use the same function. The draw is :func:`graphrec.splits.per_user_random` (a hash of user, item
and seed, so it does not depend on row order); a user keeps at least one training interaction.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from graphrec.errors import InvalidArgumentError
from graphrec.splits import VAL, per_user_random
from gnn.data import InteractionData, SplitPart

DEFAULT_VAL_FRACTION = 0.1
"""Share of each user's training interactions carved out for validation."""


def carve_validation(
    data: InteractionData, fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0, min_train_for_one: int = 3
) -> InteractionData:
    """Move ``fraction`` of each user's training interactions into a new validation part.

    Per user, ``round_half_up(n * fraction)`` pairs are held out; a user whose share rounds to zero
    but who has at least ``min_train_for_one`` training pairs gives one (a leave-one-out hold-out
    for short histories), so small data still gets a validation part.

    Args:
        data: Interactions; an existing validation part is kept and added to (rarely wanted).
        fraction: Share of each user's training pairs to hold out, in (0, 1).
        seed: Seed of the per-user draw.
        min_train_for_one: Training pairs from which a user always gives at least one.

    Returns:
        A copy with ``train`` reduced and ``val`` holding the carved pairs (plus any it had);
        ``test`` is the same.

    Raises:
        InvalidArgumentError: ``fraction`` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidArgumentError(f"validation fraction must be in (0, 1), got {fraction}")
    frame = pd.DataFrame({"user_idx": data.train.users.numpy(), "item_idx": data.train.items.numpy()})
    labels = per_user_random(frame, test_fraction=0.0, val_fraction=fraction, seed=seed)["split"].to_numpy()
    held = labels == VAL
    users, items = data.train.users.numpy(), data.train.items.numpy()
    held |= _one_more(users, held, min_train=min_train_for_one, seed=seed)
    train = SplitPart(torch.from_numpy(users[~held].copy()), torch.from_numpy(items[~held].copy()))
    val = SplitPart(
        torch.cat([data.val.users, torch.from_numpy(users[held].copy())]),
        torch.cat([data.val.items, torch.from_numpy(items[held].copy())]),
    )
    return dataclasses.replace(data, train=train, val=val)


def _one_more(users: np.ndarray, held: np.ndarray, *, min_train: int, seed: int) -> np.ndarray:
    """One seeded random pair of every user with ``>= min_train`` pairs and none held yet."""
    counts = np.bincount(users, minlength=int(users.max(initial=-1)) + 1)
    has = np.bincount(users[held], minlength=len(counts)) > 0
    want = (counts >= min_train) & ~has
    extra = np.zeros(len(users), dtype=bool)
    cand = np.flatnonzero(want[users])
    if len(cand):
        order = cand[np.random.default_rng(seed).permutation(len(cand))]
        _, first = np.unique(users[order], return_index=True)
        extra[order[first]] = True
    return extra


def merge_parts(data: InteractionData, parts: tuple[str, ...]) -> SplitPart:
    """The union of the named parts (duplicate pairs kept once), e.g. ``("train", "val")``."""
    if not parts:
        raise InvalidArgumentError("give at least one split part")
    users = torch.cat([data.part(p).users for p in parts])
    items = torch.cat([data.part(p).items for p in parts])
    key = np.unique(users.numpy().astype(np.int64) * max(data.num_items, 1) + items.numpy().astype(np.int64))
    return SplitPart(torch.from_numpy(key // max(data.num_items, 1)), torch.from_numpy(key % max(data.num_items, 1)))
