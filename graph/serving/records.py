"""Records of the live serving path (no Neo4j types leave ``graph/``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LiveScoreParts(BaseModel):
    """The parts of a live score (their sum is the score, see :mod:`graph.serving.live`)."""

    neighbours: float = Field(description="Sum of the NEIGHBOUR weights from the user's history items to the item.")
    low_rank: float = Field(description="alpha * (sum of the history's in-factors) . the item's out-factor.")
    popularity: float = Field(description="gamma * history size * the item's popularity (the popularity itself for an empty history).")
    history_size: int = Field(description="Items in the user's history at request time.")
