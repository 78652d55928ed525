r"""The low-rank correction of a cut item-item part, fitted to the users' scores.

A filter scores a history row :math:`\mathbf{h}` as :math:`\mathbf{h}\mathbf{F}` with its exact
operator :math:`\mathbf{F}` (item-item part plus low-pass part). Serving keeps only each item's top
neighbours :math:`\mathbf{W}` (sparse), so the operator it misses is
:math:`\mathbf{E} = \mathbf{F} - \mathbf{W}`. Over the training histories :math:`\mathbf{X}` (users by
items), the scores it misses are :math:`\mathbf{M} = \mathbf{X}\mathbf{E}`. The correction of rank
:math:`r` is the best rank-:math:`r` approximation of those missed scores (Eckart-Young): with
:math:`\mathbf{V}` the top-:math:`r` right singular vectors of :math:`\mathbf{M}`,

.. math::
    \mathbf{s}(\mathbf{h}) = \mathbf{h}\mathbf{W} + (\mathbf{h}\,\mathbf{E}\mathbf{V})\,\mathbf{V}^\top,
    \qquad \mathbf{X}\mathbf{E}\mathbf{V}\mathbf{V}^\top = \operatorname*{arg\,min}_{\operatorname{rank} \le r}
    \lVert \mathbf{X}\mathbf{E} - \cdot \rVert_F

so the served in-factors are :math:`\mathbf{E}\mathbf{V}` and the out-factors :math:`\mathbf{V}`
(:math:`r` dimensions, the whole served low-rank part). :math:`\mathbf{V}` comes from a randomized
SVD (Halko et al., 2011) that only applies :math:`\mathbf{E}` and :math:`\mathbf{E}^\top` to blocks of
:math:`l = r + 16` vectors, through the filter's own :meth:`~gnn.filters.base.GraphFilter.apply_linear`:
no dense item-item matrix is formed. Cost: :math:`2q + 2` applications of the filter to :math:`l` rows
for :math:`q` power iterations, plus products with :math:`\mathbf{X}` and :math:`\mathbf{W}`; memory
:math:`4(U + I)\,l` bytes for :math:`U` users and :math:`I` items.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

OVERSAMPLE = 16
"""Extra vectors of the randomized range finder."""

POWER_ITERS = 2
"""Power iterations of the randomized range finder."""

Operator = Callable[[Tensor], Tensor]


def _sparse_times(m: sp.csr_matrix, x: Tensor) -> Tensor:
    """``m @ x`` for a scipy matrix and a dense tensor, on ``x``'s device (the product runs on the CPU)."""
    return torch.from_numpy(np.asarray(m @ x.detach().cpu().numpy(), np.float32)).to(x.device)


def score_correction(
    apply_rows: Operator, apply_cols: Operator, cut: sp.csr_matrix, histories: sp.csr_matrix, rank: int, *, seed: int = 0,
    power_iters: int = POWER_ITERS, device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    r"""In / out factors :math:`(\mathbf{E}\mathbf{V}, \mathbf{V})` of the correction (see the module docstring).

    Args:
        apply_rows: :math:`\mathbf{T} \mapsto \mathbf{T}\mathbf{F}` for dense rows ``(B, I)``.
        apply_cols: :math:`\mathbf{Y} \mapsto \mathbf{F}\mathbf{Y}` for dense columns ``(I, B)``.
        cut: :math:`\mathbf{W}`, the served neighbours ``(I, I)``.
        histories: :math:`\mathbf{X}`, the training histories ``(U, I)``.
        rank: :math:`r` (capped at the number of users and items).
        seed: Seed of the random start.
        power_iters: Power iterations of the range finder.
        device: Where the filter's products run.

    Returns:
        ``(P, Q)``, each ``(I, r)``: the correction adds :math:`(\mathbf{h}\mathbf{P})\mathbf{Q}^\top`.
    """
    num_users, num_items = histories.shape
    rank = min(rank, num_users, num_items)
    width = min(rank + OVERSAMPLE, num_users, num_items)
    cut = sp.csr_matrix(cut, dtype=np.float32)
    cut_t = cut.T.tocsr()
    x = sp.csr_matrix(histories, dtype=np.float32)
    x_t = x.T.tocsr()

    def e_cols(y: Tensor) -> Tensor:  # E Y, (I, l)
        return apply_cols(y) - _sparse_times(cut, y)

    def e_rows(t: Tensor) -> Tensor:  # T E, (l, I)
        return apply_rows(t) - _sparse_times(cut_t, t.t().contiguous()).t()

    gen = torch.Generator(device="cpu").manual_seed(seed)
    start = torch.randn(num_users, width, generator=gen).to(device)
    rows = e_rows(_sparse_times(x_t, start).t().contiguous())  # G^T X E
    for _ in range(power_iters):
        basis, _ = torch.linalg.qr(rows.t())  # (I, l)
        q, _ = torch.linalg.qr(_sparse_times(x, e_cols(basis)))  # range of M B, (U, l)
        rows = e_rows(_sparse_times(x_t, q).t().contiguous())
    basis, _ = torch.linalg.qr(rows.t())
    _, _, vh = torch.linalg.svd(_sparse_times(x, e_cols(basis)), full_matrices=False)
    v = (basis @ vh[:rank].t()).contiguous()
    return e_cols(v).contiguous(), v


__all__ = ["POWER_ITERS", "score_correction"]
