"""Tiny random interaction data shared by the gnn unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrec.snapshot import SplitSpec, make_snapshot
from graphrec.splits import apply_split
from gnn.data import InteractionData


def random_data(num_users: int = 40, num_items: int = 30, per_user: tuple[int, int] = (3, 12), seed: int = 0) -> InteractionData:
    """Random implicit interactions split per user (train / val / test), as :class:`InteractionData`."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        k = int(rng.integers(per_user[0], per_user[1] + 1))
        # skewed item popularity so that popularity is a signal
        p = 1.0 / np.arange(1, num_items + 1)
        for i in rng.choice(num_items, size=min(k, num_items), replace=False, p=p / p.sum()):
            rows.append((u, int(i)))
    df = pd.DataFrame(rows, columns=["user_idx", "item_idx"])
    df = apply_split(df, SplitSpec(name="per_user_random", params={"test_fraction": 0.2, "val_fraction": 0.2}), seed=seed)
    snap = make_snapshot(
        "tiny",
        "test",
        SplitSpec(name="per_user_random"),
        pd.DataFrame({"id": [f"u{u}" for u in range(num_users)]}),
        pd.DataFrame({"id": [f"i{i}" for i in range(num_items)]}),
        df,
    )
    return InteractionData.from_snapshot(snap)


@pytest.fixture
def tiny_data() -> InteractionData:
    return random_data()
