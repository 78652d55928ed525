"""Tiny LightGCN-format datasets (``train.txt`` / ``test.txt``) for the unit tests of the bench commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_lightgcn_files(folder: Path, num_users: int = 20, num_items: int = 25, seed: int = 0) -> Path:
    """Write a random dataset to ``folder``: each user has 4 training items and 2 test items."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for u in range(num_users):
        items = rng.choice(num_items, size=6, replace=False)
        train.append(" ".join(map(str, [u, *items[:4]])))
        test.append(" ".join(map(str, [u, *items[4:]])))
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder
