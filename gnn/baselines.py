r"""Non-learned baselines, evaluated through the same :class:`gnn.evaluate.Evaluator` as LightGCN.

BPR-MF is :class:`gnn.models.MatrixFactorization` trained by :func:`gnn.train.train_model`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ModelError
from gnn.models import Recommender, Scorer, register_model


def interaction_matrix(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> sp.csr_matrix:
    """Binary user x item CSR matrix (duplicates count once)."""
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))),
        shape=(num_users, num_items),
    )
    m.data[:] = 1.0
    return m


@register_model("most_popular")
class MostPopular(Recommender):
    r"""Scores every item by its number of distinct training users (the same list for everyone).

    .. math::
        \hat{y}_{ui} = |\{v : (v, i) \in \mathcal{R}_{train}\}|

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
    """

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__(num_users, num_items)
        self.register_buffer("popularity", torch.zeros(num_items))

    def fit(self) -> None:
        """Count distinct users per item."""
        key = torch.unique(self.train_users * self.num_items + self.train_items)
        self.popularity = torch.bincount(key % self.num_items, minlength=self.num_items).to(torch.float32)

    def scorer(self) -> Scorer:
        pop = self.popularity

        def score(users: Tensor) -> Tensor:
            return pop.to(users.device).unsqueeze(0).expand(users.numel(), -1).clone()

        return score


@register_model("item_knn")
class ItemKNN(Recommender):
    r"""Item-based k-nearest neighbours with cosine similarity on binary co-occurrence (Sarwar et al., 2001).

    .. math::
        s_{ij} = \frac{|U_i \cap U_j|}{\sqrt{|U_i|}\sqrt{|U_j|} + h}, \qquad
        \hat{y}_{uj} = \sum_{i \in I_u} s_{ij}\,[j \in \mathrm{top}_k(i)]

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        k_neighbors (int, optional): Neighbours kept per item. (default: ``100``)
        shrink (float, optional): Shrinkage :math:`h` in the denominator. (default: ``0.0``)
    """

    def __init__(self, num_users: int, num_items: int, k_neighbors: int = 100, shrink: float = 0.0) -> None:
        super().__init__(num_users, num_items)
        if k_neighbors <= 0:
            raise ModelError("k_neighbors must be positive")
        self.init_kwargs.update(k_neighbors=k_neighbors, shrink=shrink)
        self.k_neighbors = k_neighbors
        self.shrink = shrink
        self.register_buffer("sim_indptr", torch.zeros(num_items + 1, dtype=torch.long))
        self.register_buffer("sim_indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("sim_values", torch.zeros(0, dtype=torch.float32))

    def _resizable_buffers(self) -> tuple[str, ...]:
        return (*super()._resizable_buffers(), "sim_indices", "sim_values")

    def fit(self, chunk_items: int = 2048) -> None:
        """Compute the top-k cosine neighbours of every item (sparse, chunked over items)."""
        r = interaction_matrix(self.train_users.cpu().numpy(), self.train_items.cpu().numpy(), self.num_users, self.num_items)
        rt = r.T.tocsr()
        norms = np.sqrt(np.asarray(r.sum(axis=0)).ravel()).astype(np.float32)
        indptr = [0]
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        k = self.k_neighbors
        for start in range(0, self.num_items, chunk_items):
            stop = min(start + chunk_items, self.num_items)
            co = (rt[start:stop] @ r).tocsr()  # (chunk, items) co-occurrence counts
            rows = np.repeat(np.arange(stop - start), np.diff(co.indptr))
            cols = co.indices
            sim = co.data / (norms[start + rows] * norms[cols] + self.shrink + 1e-12)
            keep = cols != (start + rows)  # no self-similarity
            rows, cols, sim = rows[keep], cols[keep], sim[keep].astype(np.float32)
            order = np.lexsort((cols, -sim, rows))  # per row: by similarity desc, ties by item
            rows, cols, sim = rows[order], cols[order], sim[order]
            starts = np.searchsorted(rows, np.arange(stop - start))
            rank = np.arange(len(rows)) - starts[rows]
            top = rank < k
            rows, cols, sim = rows[top], cols[top], sim[top]
            counts = np.bincount(rows, minlength=stop - start)
            indptr.extend((indptr[-1] + np.cumsum(counts)).tolist())
            indices.append(cols.astype(np.int64))
            values.append(sim)
        self.sim_indptr = torch.as_tensor(np.asarray(indptr, dtype=np.int64))
        self.sim_indices = torch.as_tensor(np.concatenate(indices) if indices else np.zeros(0, np.int64))
        self.sim_values = torch.as_tensor(np.concatenate(values) if values else np.zeros(0, np.float32))

    def similarity(self) -> sp.csr_matrix:
        """The (items x items) neighbour matrix: row ``i`` holds the top-k neighbours of ``i``."""
        return sp.csr_matrix(
            (self.sim_values.cpu().numpy(), self.sim_indices.cpu().numpy(), self.sim_indptr.cpu().numpy()),
            shape=(self.num_items, self.num_items),
        )

    def scorer(self) -> Scorer:
        r = interaction_matrix(self.train_users.cpu().numpy(), self.train_items.cpu().numpy(), self.num_users, self.num_items)
        s = self.similarity()

        def score(users: Tensor) -> Tensor:
            rows = r[users.cpu().numpy()]
            return torch.from_numpy(np.asarray((rows @ s).todense(), dtype=np.float32)).to(users.device)

        return score
