"""Small synthetic datasets (generic CSV layout) for the loader integration tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_csv_dataset(folder: Path, n_users: int = 40, n_items: int = 60, per_user: int = 12, seed: int = 0, with_split: bool = True) -> dict[str, Path]:
    """Write users.csv, items.csv and interactions.csv; returns their paths.

    Items have titles, text, a year and genres/categories/brands; interactions have ratings,
    timestamps and (optionally) a train/test split (the last two interactions of each user in test).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "users.csv"
    users.write_text("id\n" + "".join(f"u{u}\n" for u in range(n_users)), encoding="utf-8")
    genres = ["Drama", "Comedy", "Action", "Sci-Fi"]
    lines = ["id,title,text,year,genres,categories,brand"]
    for i in range(n_items):
        g = "|".join(sorted({genres[i % 4], genres[(i * 7) % 4]}))
        lines.append(f'i{i},Item {i},"Text of item {i}, with a comma",{1990 + i % 30},{g},Cat{i % 3},Brand{i % 5}')
    items = folder / "items.csv"
    items.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["user_id,item_id,rating,timestamp" + (",split" if with_split else "")]
    for u in range(n_users):
        chosen = rng.choice(n_items, size=per_user, replace=False)
        for k, i in enumerate(chosen):
            rating = float(rng.integers(1, 11)) / 2
            split = ",test" if with_split and k >= per_user - 2 else (",train" if with_split else "")
            rows.append(f"u{u},i{i},{rating},{1_000_000 + u * 100 + k}{split}")
    inter = folder / "interactions.csv"
    inter.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"users": users, "items": items, "interactions": inter}
