"""Free-text queries for live models: the text encoder a live checkpoint was fitted with.

A live model has no projection head: a text wish is encoded with the same BERT model as the item
texts, the items with the closest texts are found in the text vector index, and they stand in for
a history (:func:`graph.serving.planner.recommend_cold_start`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gnn.text.encoder import TextEncoder


class LiveText:
    """The text side of a live checkpoint (``encoder`` loads lazily).

    Args:
        encoder (TextEncoder): The encoder the item texts were encoded with.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], encoder: TextEncoder | None = None) -> LiveText:
        """The text side of the live checkpoint at ``path`` (the default encoder unless one is given)."""
        from gnn.live_checkpoint import load_live_checkpoint

        load_live_checkpoint(Path(path))  # fails early on a broken checkpoint
        return cls(encoder or TextEncoder())

    def vector(self, text: str) -> np.ndarray:
        """The unit text vector of ``text``."""
        v = np.asarray(self.encoder.encode([text]), dtype=np.float32).reshape(-1)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v


__all__ = ["LiveText"]
