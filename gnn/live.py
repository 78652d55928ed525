r"""How a user's scores follow from their history: the form every live-servable model exports.

A model that can serve a user from their history *as it is in the graph at request time* (including
feedback written a moment ago) exports a :class:`LiveForm`. Its scores for a history row
:math:`\mathbf{h} \in \{0, 1\}^{|\mathcal{I}|}` (1 for every item the user interacted with) are

.. math::
    \mathbf{s}(\mathbf{h}) = \mathbf{h} \mathbf{W}
      + \alpha \, (\mathbf{h} \mathbf{P}) \mathbf{Q}^{\top}
      + \gamma \, \lVert \mathbf{h} \rVert_1 \, \mathbf{p}

where :math:`\mathbf{W}` is a sparse item-item matrix (row :math:`j` holds the items :math:`j`
votes for, at most ``top_k`` of them, with their weight), :math:`\mathbf{P}, \mathbf{Q} \in
\mathbb{R}^{|\mathcal{I}| \times r}` are item factors of a low-rank part (the *in* and *out*
factors) and :math:`\mathbf{p}` is a per-item popularity term. Every term is linear in the history,
so it can be computed from the graph: :math:`\mathbf{h}\mathbf{W}` is a sum over the user's
``(:Item)-[:NEIGHBOUR {w}]->(:Item)`` relationships, :math:`\mathbf{h}\mathbf{P}` a sum of the
history items' in-factors, and :math:`(\mathbf{h}\mathbf{P})\mathbf{Q}^{\top}` a vector-index
search over the out-factors. The same neighbour relationships are the explanation paths ("because
you liked :math:`j`, weight :math:`W_{ji}`").

``gnn/`` computes live forms from snapshots; ``graph/`` stores them in Neo4j and evaluates them at
request time; :meth:`LiveForm.scores` is the offline reference that serving must equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from graphrec.errors import ModelError


@dataclass
class LiveForm:
    """A model's scores as a function of a user's history (see the module docstring).

    Attributes:
        neighbours: :math:`\\mathbf{W}`, a CSR ``(num_items, num_items)`` float32 matrix; row ``j``
            holds at most ``top_k`` nonzeros (the items ``j`` votes for).
        in_factors: :math:`\\mathbf{P}` ``(num_items, r)`` float32, or ``None`` (no low-rank part).
        out_factors: :math:`\\mathbf{Q}` ``(num_items, r)`` float32, or ``None``.
        alpha: Weight :math:`\\alpha` of the low-rank part.
        popularity: :math:`\\mathbf{p}` ``(num_items,)`` float32, or ``None`` (no popularity term).
        gamma: Weight :math:`\\gamma` of the popularity term.
    """

    neighbours: sp.csr_matrix
    in_factors: np.ndarray | None = None
    out_factors: np.ndarray | None = None
    alpha: float = 0.0
    popularity: np.ndarray | None = None
    gamma: float = 0.0

    def __post_init__(self) -> None:
        n = self.neighbours.shape[0]
        if self.neighbours.shape != (n, n):
            raise ModelError(f"neighbours must be square, got {self.neighbours.shape}")
        if (self.in_factors is None) != (self.out_factors is None):
            raise ModelError("in_factors and out_factors come together")
        if self.in_factors is not None and (self.in_factors.shape != self.out_factors.shape or self.in_factors.shape[0] != n):  # type: ignore[union-attr]
            raise ModelError("in_factors and out_factors must both be (num_items, r)")
        if self.popularity is not None and self.popularity.shape != (n,):
            raise ModelError("popularity must be (num_items,)")

    @property
    def num_items(self) -> int:
        return int(self.neighbours.shape[0])

    @property
    def rank(self) -> int:
        return 0 if self.in_factors is None else int(self.in_factors.shape[1])

    @property
    def top_k(self) -> int:
        """The largest number of neighbours of one item."""
        return int(np.diff(self.neighbours.indptr).max(initial=0))

    def scores(self, history: sp.csr_matrix | np.ndarray) -> np.ndarray:
        """Scores of every item for a batch of history rows ``(B, num_items)`` (the offline reference)."""
        h = sp.csr_matrix(history, dtype=np.float32)
        if h.shape[1] != self.num_items:
            raise ModelError(f"history rows have {h.shape[1]} columns, the model has {self.num_items} items")
        out = np.asarray((h @ self.neighbours).todense(), dtype=np.float32)
        if self.in_factors is not None and self.alpha != 0.0:
            out += self.alpha * np.asarray(h @ self.in_factors, dtype=np.float32) @ self.out_factors.T  # type: ignore[union-attr]
        if self.popularity is not None and self.gamma != 0.0:
            out += self.gamma * np.asarray(h.sum(axis=1), dtype=np.float32) * self.popularity[None, :]
        return out


def top_k_rows(dense: np.ndarray, k: int, *, drop_diagonal_offset: int | None = None) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a dense block (ties broken by column).

    Args:
        dense: ``(B, num_items)`` block of an item-item matrix.
        k: Entries kept per row.
        drop_diagonal_offset: When given, row ``r`` of the block is item ``offset + r`` and its own
            column is dropped before the selection (an item does not vote for itself).
    """
    block = np.array(dense, dtype=np.float32, copy=True)
    if drop_diagonal_offset is not None:
        rows = np.arange(block.shape[0])
        block[rows, drop_diagonal_offset + rows] = -np.inf
    k = min(k, block.shape[1])
    idx = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < block.shape[1] else np.tile(np.arange(block.shape[1]), (block.shape[0], 1))
    vals = np.take_along_axis(block, idx, axis=1)
    keep = np.isfinite(vals) & (vals > 0)
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    return sp.csr_matrix((vals[keep], idx[keep], indptr), shape=block.shape, dtype=np.float32)


__all__ = ["LiveForm", "top_k_rows"]
