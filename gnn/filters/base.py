r"""The shared machinery of closed-form graph filters: fit, exact and truncated scoring, live form.

Every filter here scores a user from their binary history row :math:`\mathbf{h}` as

.. math::
    \mathbf{s}(\mathbf{h}) = \mathbf{h} \mathbf{W} + \alpha \, (\mathbf{h} \mathbf{P}) \mathbf{Q}^\top

with an item-item part :math:`\mathbf{W}` (linear or polynomial in the item-item graph, or EASE's
weights) and a low-rank part with in / out item factors :math:`\mathbf{P}, \mathbf{Q}`. This is
exactly :class:`gnn.live.LiveForm` without popularity, so serving from a live history reproduces
the offline scores.

With ``neighbours_top_k`` set, :meth:`GraphFilter.fit` keeps only each item's ``top_k`` strongest
outgoing weights of :math:`\mathbf{W}` (an item never votes for itself) and the scorer uses that
truncated matrix, so offline evaluation measures what serving serves. With ``None``, the scorer
applies the exact :math:`\mathbf{W}` through sparse products (:meth:`GraphFilter.apply_linear`).
Self-votes only change the scores of items already in the history, which are never recommended.

The cut drops many small weights and every negative one (a sharpened filter's). With
``correction_rank`` :math:`c > 0` the truncated model gets them back in low rank: the whole served
low-rank part (the low-pass filter included) becomes the best rank-:math:`r` approximation of the
scores the cut misses on the training histories :math:`\mathbf{X}`. With :math:`\mathbf{F}` the
exact operator (item-item plus low-pass part), :math:`\mathbf{W}` its cut and
:math:`\mathbf{E} = \mathbf{F} - \mathbf{W}`, and :math:`\mathbf{V}` the top-:math:`r` right singular
vectors of :math:`\mathbf{X}\mathbf{E}`, the served operator is

.. math::
    \mathbf{W} + \mathbf{E}\mathbf{V}\mathbf{V}^\top

(:mod:`gnn.filters.correction`): in factors :math:`\mathbf{E}\mathbf{V}`, out factors
:math:`\mathbf{V}`, weight 1, so serving stays exact. :math:`r` is ``factor_rank`` (by default the
larger of the low-pass rank and :math:`c`, :mod:`gnn.filters.config`). Memory: :math:`8Ir` bytes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ModelError
from gnn.filters.correction import score_correction
from gnn.filters.normalise import ItemGraph, degree_power
from gnn.live import LiveForm, top_k_rows
from gnn.models import Recommender, Scorer

DEFAULT_NEIGHBOURS_TOP_K = 100
"""Neighbours kept per item by default: 1M item-item edges for a 10k-item catalogue."""

DEFAULT_CORRECTION_RANK = 256
"""Rank of the cut's low-rank correction in the filter configs (the models' own default is 0, so
checkpoints saved without one load unchanged)."""



def rows_times_sparse(rows: Tensor, cols: Tensor, num_rows: int, indptr: Tensor, indices: Tensor, values: Tensor, num_items: int) -> Tensor:
    r"""Dense :math:`\mathbf{H}\mathbf{W}` for a binary :math:`\mathbf{H}` given as (row, column) pairs and a CSR :math:`\mathbf{W}`.

    Each history pair adds row ``col`` of :math:`\mathbf{W}` to its output row (one scatter-add),
    so the cost is the number of history pairs times the neighbours per item.
    """
    out = torch.zeros(num_rows, num_items, dtype=values.dtype, device=values.device)
    counts = indptr[cols + 1] - indptr[cols]
    total = int(counts.sum())
    if total == 0:
        return out
    starts = torch.repeat_interleave(indptr[cols], counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts
    pos = starts + torch.arange(total, device=values.device) - torch.repeat_interleave(first, counts, output_size=total)
    out.index_put_((torch.repeat_interleave(rows, counts, output_size=total), indices[pos]), values[pos], accumulate=True)
    return out


class GraphFilter(Recommender):
    r"""Base class of the closed-form graph filters (see the module docstring).

    Subclasses set ``self.alpha``, ``self.rank`` and ``self.power`` (the degree exponent
    :math:`\beta` of the low-rank factors :math:`\mathbf{P} = \mathbf{D}_I^{-\beta}\mathbf{V}`,
    :math:`\mathbf{Q} = \mathbf{D}_I^{\beta}\mathbf{V}`) and implement :meth:`apply_linear`.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        neighbours_top_k (int, optional): Keep each item's strongest ``top_k`` item-item weights and
            score with them; ``None`` scores with the exact item-item part.
            (default: :data:`DEFAULT_NEIGHBOURS_TOP_K`)
        batch_users (int, optional): Rows per block when computing neighbours. (default: ``1024``)
        correction_rank (int, optional): Rank :math:`c` of the correction of the cut item-item part
            (see the module docstring); ``0``: none. (default: ``0``)
        factor_rank (int, optional): With a correction, the rank :math:`r` of the whole served
            low-rank part (correction plus low-pass filter), so serving costs no more than a
            low-pass filter of that rank; ``None``: ``correction_rank``. (default: ``None``)
    """

    trainable: ClassVar[bool] = False
    alpha: float = 0.0
    rank: int = 0
    power: float = 0.5
    fitted_parts: tuple[str, ...] = ("train",)
    """Split parts the model was fitted on (set by :func:`gnn.filters.selection.fit_filter`)."""

    def __init__(self, num_users: int, num_items: int, neighbours_top_k: int | None = DEFAULT_NEIGHBOURS_TOP_K, batch_users: int = 1024,
                 correction_rank: int = 0, factor_rank: int | None = None) -> None:
        super().__init__(num_users, num_items)
        if neighbours_top_k is not None and neighbours_top_k <= 0:
            raise ModelError("neighbours_top_k must be positive or None")
        if batch_users <= 0:
            raise ModelError("batch_users must be positive")
        if correction_rank < 0:
            raise ModelError("correction_rank must be >= 0")
        if factor_rank is not None and factor_rank <= 0:
            raise ModelError("factor_rank must be positive or None")
        self.neighbours_top_k = neighbours_top_k
        self.batch_users = batch_users
        self.correction_rank = int(correction_rank)
        self.factor_rank = factor_rank
        self.init_kwargs.update(neighbours_top_k=neighbours_top_k, batch_users=batch_users)
        if self.correction_rank:
            self.init_kwargs.update(correction_rank=self.correction_rank, factor_rank=factor_rank)
        self.register_buffer("item_degree", torch.zeros(num_items))
        self.register_buffer("basis", torch.zeros(num_items, 0))
        self.register_buffer("nb_indptr", torch.zeros(0, dtype=torch.long))
        self.register_buffer("nb_indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("nb_values", torch.zeros(0))
        self.register_buffer("corr_in", torch.zeros(num_items, 0))
        self.register_buffer("corr_out", torch.zeros(num_items, 0))
        self._graph: tuple[tuple[Any, ...], ItemGraph] | None = None

    def _resizable_buffers(self) -> tuple[str, ...]:
        return (*super()._resizable_buffers(), "basis", "nb_indptr", "nb_indices", "nb_values", "corr_in", "corr_out")

    # -- the graph of the interactions this model holds ------------------------------------------
    def graph(self) -> ItemGraph:
        """The normalised item graph of the model's interactions (cached per device and data)."""
        u, i = self.train_users, self.train_items
        key = (u.device, u.data_ptr(), u.numel(), i.data_ptr())
        if self._graph is None or self._graph[0] != key:
            self._graph = (key, ItemGraph(u, i, self.num_users, self.num_items, u.device))
        return self._graph[1]

    @property
    def truncated(self) -> bool:
        """Whether the scorer uses the stored top-k neighbours (fitted with ``neighbours_top_k``)."""
        return self.nb_indptr.numel() == self.num_items + 1

    # -- subclass hooks ----------------------------------------------------------------------------
    def apply_linear(self, x: Tensor) -> Tensor:
        r"""The exact item-item part applied to dense rows: :math:`\mathbf{X}\mathbf{W}`, ``(B, I)`` -> ``(B, I)``."""
        raise NotImplementedError

    def apply_linear_t(self, x: Tensor) -> Tensor:
        r"""The transposed item-item part applied to dense rows: :math:`\mathbf{X}\mathbf{W}^\top`.

        Default: :meth:`apply_linear` (a symmetric item-item part); non-symmetric filters override it.
        """
        return self.apply_linear(x)

    def fit_linear(self, graph: ItemGraph) -> None:
        """Compute what :meth:`apply_linear` needs beyond the graph (EASE's weights). Default: nothing."""

    def fit_low_pass(self, graph: ItemGraph) -> None:
        """Compute what :meth:`factors` needs beyond the basis (runs before the cut). Default: nothing."""

    # -- fitting -------------------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self) -> None:
        """Degrees, the low-rank basis, the item-item part and (with ``neighbours_top_k``) its top-k rows."""
        graph = self.graph()
        self.item_degree = graph.item_degree.clone()
        if self.rank > 0 and self.alpha != 0.0:
            self.basis, _ = graph.low_pass_basis(self.rank)
        else:
            self.basis = torch.zeros(self.num_items, 0, device=self.item_degree.device)
        self.nb_indptr = torch.zeros(0, dtype=torch.long, device=self.item_degree.device)
        self.fit_linear(graph)
        self.fit_low_pass(graph)
        if self.neighbours_top_k is not None:
            self.truncate(self.neighbours_top_k)

    @torch.no_grad()
    def truncate(self, top_k: int) -> None:
        """Cut the item-item part to each item's ``top_k`` neighbours; the scorer then uses them.

        :meth:`fit` calls it when ``neighbours_top_k`` is set; calling it on a model fitted without
        sets ``neighbours_top_k`` (evaluate the exact filter first, then the truncated one).
        """
        if self.truncated:
            raise ModelError("the item-item part is already truncated")
        w = self.neighbour_matrix(top_k)
        dev = self.item_degree.device
        self.nb_indptr = torch.from_numpy(w.indptr.astype(np.int64)).to(dev)
        self.nb_indices = torch.from_numpy(w.indices.astype(np.int64)).to(dev)
        self.nb_values = torch.from_numpy(w.data.astype(np.float32)).to(dev)
        self.neighbours_top_k = int(top_k)
        self.init_kwargs["neighbours_top_k"] = int(top_k)
        self._fit_correction(w)
        self.release_linear()

    @torch.no_grad()
    def _fit_correction(self, w: sp.csr_matrix) -> None:
        """Store the served low-rank part of the cut ``w`` (its correction plus the low-pass part)."""
        dev = self.item_degree.device
        f = self.corrected_low_rank(w)
        self.corr_in, self.corr_out = f if f is not None else (torch.zeros(self.num_items, 0, device=dev),) * 2

    @torch.no_grad()
    def corrected_low_rank(self, w: sp.csr_matrix) -> tuple[Tensor, Tensor] | None:
        r"""In / out factors of the whole served low-rank part of ``w``, a cut of the exact operator: the
        best approximation of rank ``factor_rank`` (else ``correction_rank``) of the scores the cut
        misses on the training histories (:mod:`gnn.filters.correction`), low-pass part included;
        ``None`` without ``correction_rank``. Needs the exact part."""
        if self.correction_rank <= 0:
            return None
        f = self.factors()
        alpha = float(self.alpha)

        def rows(t: Tensor) -> Tensor:  # T F
            out = self.apply_linear(t)
            return torch.addmm(out, t @ f[0], f[1].t(), alpha=alpha) if f is not None else out

        def cols(y: Tensor) -> Tensor:  # F Y
            out = self.apply_linear_t(y.t().contiguous()).t()
            return out.addmm(f[0], f[1].t() @ y, alpha=alpha) if f is not None else out.contiguous()

        h = self.graph().history
        x = sp.csr_matrix((h.values().cpu().numpy(), h.col_indices().cpu().numpy(), h.crow_indices().cpu().numpy()), shape=tuple(h.shape))
        return score_correction(rows, cols, w, x, self.factor_rank or self.correction_rank, device=self.item_degree.device)

    def release_linear(self) -> None:
        """Drop state only the exact item-item part needs, once the top-k rows are stored. Default: nothing."""

    @property
    def corrected(self) -> bool:
        """Whether the truncated item-item part carries a low-rank correction."""
        return self.truncated and self.corr_in.shape[1] > 0

    def low_rank(self, served: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, float] | None:
        r"""The whole low-rank part as ``(P, Q, weight)``: the scores add ``weight * (h P) Q^T``.

        Without a correction, :meth:`factors` and :math:`\alpha`; with one, the factors of
        :meth:`corrected_low_rank` (``served``, else the stored ones) and weight 1.
        """
        if served is None and self.corrected:
            served = (self.corr_in, self.corr_out)
        if served is not None:
            return served[0], served[1], 1.0
        f = self.factors()
        return None if f is None else (f[0], f[1], float(self.alpha))

    def factors(self) -> tuple[Tensor, Tensor] | None:
        r"""The low-rank in / out factors :math:`(\mathbf{D}_I^{-\beta}\mathbf{V}, \mathbf{D}_I^{\beta}\mathbf{V})`, or ``None``."""
        if self.basis.shape[1] == 0 or self.alpha == 0.0:
            return None
        d = self.item_degree.unsqueeze(1)
        return degree_power(d, -self.power) * self.basis, degree_power(d, self.power) * self.basis

    @torch.no_grad()
    def linear_rows(self, items: Tensor) -> Tensor:
        """Rows ``items`` of the exact item-item part, dense ``(len(items), I)``."""
        x = torch.zeros(items.numel(), self.num_items, device=self.item_degree.device)
        x[torch.arange(items.numel(), device=x.device), items.to(x.device)] = 1.0
        return self.apply_linear(x)

    @torch.no_grad()
    def neighbour_matrix(self, top_k: int) -> sp.csr_matrix:
        """The item-item part with each row cut to its ``top_k`` largest positive off-diagonal weights (CSR)."""
        blocks = []
        for start in range(0, self.num_items, self.batch_users):
            items = torch.arange(start, min(start + self.batch_users, self.num_items), device=self.item_degree.device)
            blocks.append(top_k_rows(self.linear_rows(items).cpu().numpy(), top_k, drop_diagonal_offset=start))
        return sp.vstack(blocks, format="csr").astype(np.float32)

    # -- scoring -------------------------------------------------------------------------------------
    def stored_neighbours(self) -> sp.csr_matrix:
        """The stored top-k item-item matrix (fitted with ``neighbours_top_k``)."""
        if not self.truncated:
            raise ModelError("this model was fitted without neighbours_top_k")
        return sp.csr_matrix(
            (self.nb_values.cpu().numpy(), self.nb_indices.cpu().numpy(), self.nb_indptr.cpu().numpy()),
            shape=(self.num_items, self.num_items),
        )

    @torch.no_grad()
    def score_rows(self, users: Tensor) -> Tensor:
        """Scores of ``users`` (indices) over all items from their stored history, ``(B, I)``."""
        graph = self.graph()
        h = graph.history_rows(users)
        if self.truncated:
            rows = torch.repeat_interleave(torch.arange(users.numel(), device=h.device), h.crow_indices().diff())
            out = rows_times_sparse(rows, h.col_indices(), users.numel(), self.nb_indptr, self.nb_indices, self.nb_values, self.num_items)
        else:
            # row-major before adding the low-rank part and before the caller's top-k: both are
            # several times slower on the transposed layout the sparse products leave behind
            out = self.apply_linear(h.to_dense()).contiguous()
        f = self.low_rank()
        if f is not None:
            out.addmm_(h @ f[0], f[1].t(), alpha=f[2])
        return out

    def scorer(self) -> Scorer:
        def score(users: Tensor) -> Tensor:
            return self.score_rows(users)

        return score

    # -- serving -------------------------------------------------------------------------------------
    @torch.no_grad()
    def live_form(self, top_k: int) -> LiveForm:
        """The model as a :class:`gnn.live.LiveForm`: item-item part cut to ``top_k`` neighbours, low-rank factors.

        When ``top_k`` equals the stored ``neighbours_top_k``, the stored neighbours are used, so
        ``live_form(neighbours_top_k).scores(h)`` equals the model's scores.
        """
        if top_k <= 0:
            raise ModelError("top_k must be positive")
        if self.truncated and top_k == self.neighbours_top_k:
            w = self.stored_neighbours()
        elif self.truncated and self.neighbours_top_k is not None and top_k < self.neighbours_top_k:
            w = _cut_rows(self.stored_neighbours(), top_k)
        else:
            w = self.neighbour_matrix(top_k)
        if self.corrected and top_k != self.neighbours_top_k:
            raise ModelError(f"a corrected model serves its {self.neighbours_top_k} neighbours per item, not {top_k}")
        f = self.low_rank(None if self.truncated else self.corrected_low_rank(w))
        if f is None:
            return LiveForm(neighbours=w)
        return LiveForm(
            neighbours=w, in_factors=f[0].cpu().numpy().astype(np.float32), out_factors=f[1].cpu().numpy().astype(np.float32), alpha=f[2]
        )


def _cut_rows(w: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a CSR matrix (ties by column)."""
    rows = []
    for r in range(w.shape[0]):
        a, b = w.indptr[r], w.indptr[r + 1]
        idx, val = w.indices[a:b], w.data[a:b]
        order = np.lexsort((idx, -val))[:k]
        rows.append((idx[order], val[order]))
    indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in rows])])
    indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=w.shape, dtype=np.float32)
