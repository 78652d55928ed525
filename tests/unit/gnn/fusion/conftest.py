"""A tiny two-taste world: space films and romance films, users who like one kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from graphrec.snapshot import Snapshot, SplitSpec, make_snapshot
from graphrec.splits import per_user_random
from gnn.text.encoder import EncoderConfig, TextEncoder

SPACE = [
    "Astronauts travel to Mars in a rocket",
    "A spaceship crew explores a distant galaxy",
    "Alien invasion of a space station",
    "A lonely astronaut stranded on the moon",
    "Starfighters battle in outer space",
    "A mission to save Earth from an asteroid",
]
ROMANCE = [
    "Two strangers fall in love in Paris",
    "A wedding planner finds romance",
    "A love story between childhood sweethearts",
    "A romantic comedy about a first date",
    "Lovers reunite after many years apart",
    "A bride runs away on her wedding day",
]


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    # fp32: these tests check the fusion logic on a 24-item toy whose margins are a rank or two;
    # int8 encoding is covered by tests/unit/gnn/text (and moves the new item from rank 3-5 to 6 here)
    return TextEncoder(EncoderConfig(device="cpu", precision="fp32"))


@pytest.fixture(scope="session")
def taste_snapshot() -> Snapshot:
    rng = np.random.default_rng(0)
    titles = SPACE + ROMANCE
    items = pd.DataFrame({"id": [f"i{k}" for k in range(len(titles))], "title": titles,
                          "genres": [["Sci-Fi"]] * 6 + [["Romance"]] * 6})
    users = pd.DataFrame({"id": [f"u{k}" for k in range(24)]})
    rows = []
    for u in range(24):
        pool = np.arange(6) if u % 2 == 0 else np.arange(6, 12)
        for i in rng.choice(pool, size=5, replace=False):
            rows.append((u, int(i), 1000 + len(rows)))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "timestamp"])
    inter = per_user_random(inter, test_fraction=0.2, val_fraction=0.25, seed=1)
    return make_snapshot("tastes", "test", SplitSpec(name="per_user_random"), users, items, inter)
