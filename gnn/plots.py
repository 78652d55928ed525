"""PNG training curves (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_curves(
    path: str | os.PathLike[str],
    history: Sequence[dict[str, Any]],
    metrics: Sequence[str] = ("recall@20", "ndcg@20"),
    title: str = "training",
) -> Path:
    """Plot loss per epoch and the given metrics at evaluation epochs into one PNG.

    Args:
        path: Output file.
        history: Records with ``epoch``, ``loss`` and optionally ``metrics`` (dict).
        metrics: Metric keys to plot.
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:blue")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.grid(alpha=0.3)
    evals = [h for h in history if h.get("metrics")]
    for m in metrics:
        pts = [(h["epoch"], h["metrics"][m]) for h in evals if m in h["metrics"]]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=m)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("metric")
    ax2.grid(alpha=0.3)
    if evals:
        ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
