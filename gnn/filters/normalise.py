r"""The normalised user-item matrix and its item-item graph, as torch sparse products on a device.

Every graph filter in :mod:`gnn.filters` works on the normalised interaction matrix

.. math::
    \tilde{\mathbf{R}} = \mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}, \qquad
    \tilde{\mathbf{P}} = \tilde{\mathbf{R}}^\top \tilde{\mathbf{R}}

where :math:`\mathbf{R} \in \{0,1\}^{U \times I}` holds the training interactions and
:math:`\mathbf{D}_U, \mathbf{D}_I` the user and item degrees (a zero degree stays zero).
:math:`\tilde{\mathbf{P}}` (the normalised item-item graph, eigenvalues in :math:`[0, 1]`) is never
built: a signal block :math:`\mathbf{X}` is filtered as :math:`(\mathbf{X}\tilde{\mathbf{R}}^\top)
\tilde{\mathbf{R}}`, two sparse-dense products of :math:`2N` multiply-adds per row. Memory:
:math:`O(N)` for the two CSR copies (:math:`\tilde{\mathbf{R}}` and its transpose).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import ModelError


def csr_tensor(m: sp.spmatrix, device: torch.device | str = "cpu") -> Tensor:
    """A scipy sparse matrix as a float32 ``torch.sparse_csr`` tensor on ``device``."""
    m = sp.csr_matrix(m, dtype=np.float32)
    return _csr(torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
                torch.from_numpy(m.data), m.shape, device)


def _csr(crow: Tensor, cols: Tensor, vals: Tensor, size: tuple[int, int], device: torch.device | str) -> Tensor:
    """``torch.sparse_csr_tensor`` of arrays built valid here (scipy's CSR), without torch's invariant
    checks and its warning that CSR tensors are in beta (printed once per process in every fit log)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(crow, cols, vals, size=size, device=device, check_invariants=False)


def interaction_csr(users: Tensor, items: Tensor, num_users: int, num_items: int) -> sp.csr_matrix:
    """Binary ``(num_users, num_items)`` CSR of the given pairs (duplicates count once)."""
    m = sp.csr_matrix(
        (np.ones(int(users.numel()), dtype=np.float32), (users.cpu().numpy(), items.cpu().numpy())),
        shape=(num_users, num_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def degree_power(degree: Tensor, power: float) -> Tensor:
    """``degree ** power`` with zero for a zero degree (any sign of ``power``)."""
    out = degree.clamp(min=1).pow(power)
    return torch.where(degree > 0, out, torch.zeros_like(out))


def normalised_interactions(r: sp.csr_matrix) -> sp.csr_matrix:
    r""":math:`\mathbf{D}_U^{-1/2} \mathbf{R} \mathbf{D}_I^{-1/2}` (float32 CSR)."""
    du = np.asarray(r.sum(axis=1)).ravel()
    di = np.asarray(r.sum(axis=0)).ravel()
    su = np.where(du > 0, 1.0 / np.sqrt(np.maximum(du, 1)), 0.0).astype(np.float32)
    si = np.where(di > 0, 1.0 / np.sqrt(np.maximum(di, 1)), 0.0).astype(np.float32)
    return sp.csr_matrix(sp.diags(su) @ r @ sp.diags(si), dtype=np.float32)


class ItemGraph:
    r"""The normalised item-item graph :math:`\tilde{\mathbf{P}} = \tilde{\mathbf{R}}^\top\tilde{\mathbf{R}}`
    in factored form, plus the histories of the users, on one device.

    Args:
        users (Tensor): User index of every training pair.
        items (Tensor): Item index of every training pair.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        device (torch.device, optional): Where products run. (default: the device of ``users``)

    Memory: three CSR matrices of :math:`N` nonzeros (:math:`\mathbf{R}`, :math:`\tilde{\mathbf{R}}`,
    :math:`\tilde{\mathbf{R}}^\top`), about :math:`36 N` bytes.
    """

    def __init__(self, users: Tensor, items: Tensor, num_users: int, num_items: int, device: torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else users.device
        self.num_users, self.num_items = num_users, num_items
        r = interaction_csr(users, items, num_users, num_items)
        rn = normalised_interactions(r)
        self.item_degree = torch.from_numpy(np.asarray(r.sum(axis=0)).ravel().astype(np.float32)).to(self.device)
        self.history = csr_tensor(r, self.device)
        self.norm = csr_tensor(rn, self.device)
        self.norm_t = csr_tensor(rn.T.tocsr(), self.device)
        self._indptr = torch.from_numpy(r.indptr.astype(np.int64)).to(self.device)
        self._indices = torch.from_numpy(r.indices.astype(np.int64)).to(self.device)

    def history_rows(self, users: Tensor) -> Tensor:
        """Binary history rows of ``users`` as a ``(B, I)`` sparse CSR tensor."""
        users = users.to(self.device)
        start, stop = self._indptr[users], self._indptr[users + 1]
        counts = stop - start
        total = int(counts.sum())
        crow = torch.zeros(users.numel() + 1, dtype=torch.long, device=self.device)
        crow[1:] = torch.cumsum(counts, 0)
        offsets = torch.arange(total, device=self.device) - torch.repeat_interleave(crow[:-1], counts, output_size=total)
        cols = self._indices[torch.repeat_interleave(start, counts, output_size=total) + offsets]
        vals = torch.ones(total, dtype=torch.float32, device=self.device)
        return _csr(crow, cols, vals, (users.numel(), self.num_items), self.device)

    def propagate_t(self, xt: Tensor) -> Tensor:
        r""":math:`\tilde{\mathbf{P}} \mathbf{X}^\top` for a signal block given transposed, ``(I, B)`` -> ``(I, B)``."""
        return self.norm_t @ (self.norm @ xt)

    def propagate(self, x: Tensor) -> Tensor:
        r""":math:`\mathbf{X} \tilde{\mathbf{P}}` for a dense signal block ``(B, I)`` (:math:`\tilde{\mathbf{P}}` is symmetric)."""
        return self.propagate_t(x.t().contiguous()).t()

    def low_pass_basis(self, rank: int, *, oversample: int = 16, power_iters: int = 7, seed: int = 0) -> tuple[Tensor, Tensor]:
        r"""Top-``rank`` right singular vectors :math:`\mathbf{V}` ``(I, rank)`` and singular values
        of :math:`\tilde{\mathbf{R}}` by randomized SVD (Halko et al., 2011) with sparse products only.

        Power iterations are re-orthonormalised with QR; cost :math:`O((N + (U + I) l) \, l \cdot q)`
        for :math:`l` = ``rank + oversample`` and :math:`q` = ``power_iters``.
        """
        rank = min(rank, self.num_items, self.num_users)
        if rank <= 0:
            return torch.zeros(self.num_items, 0, device=self.device), torch.zeros(0, device=self.device)
        width = min(rank + oversample, self.num_items, self.num_users)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        omega = torch.randn(self.num_items, width, generator=gen).to(self.device)
        y = self.norm @ omega  # (U, l)
        for _ in range(power_iters):
            q, _ = torch.linalg.qr(y)
            z, _ = torch.linalg.qr(self.norm_t @ q)  # (I, l)
            y = self.norm @ z
        q, _ = torch.linalg.qr(y)
        bt = self.norm_t @ q  # (I, l) = (Q^T R~)^T
        _, s, vh = torch.linalg.svd(bt.t(), full_matrices=False)
        return vh[:rank].t().contiguous(), s[:rank]


def check_finite(x: Tensor, what: str) -> Tensor:
    """Raise :class:`ModelError` when ``x`` holds NaN or infinity."""
    if not bool(torch.isfinite(x).all()):
        raise ModelError(f"{what} is not finite")
    return x
