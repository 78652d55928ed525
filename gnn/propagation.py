r"""Fast feeding of PyG's :class:`~torch_geometric.nn.models.LightGCN`: a pre-normalised symmetric
sparse adjacency and a sparse product whose backward reuses that same matrix.

Why: PyG's default ``edge_index`` path re-normalises and scatters on every layer (ML_FACTS:
~300 s per Gowalla-sized BPR epoch on 2 cores). With ``LightGCN(normalize=False)`` and a
pre-normalised ``torch.sparse_csr`` adjacency, :class:`~torch_geometric.nn.conv.LGConv` reduces to
``spmm(adj, x)`` (its ``message_and_aggregate``), but autograd's backward of a CSR product
transposes the matrix on every call (~10x the forward cost). The normalised adjacency

.. math::
    \hat{A} = D^{-1/2} A D^{-1/2}, \qquad A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix}

is symmetric, and so is LightGCN's whole propagation :math:`P = \sum_l \alpha_l \hat{A}^l`: its backward
is :math:`P G`, the same products as the forward (:class:`LightGCNOperator`). A training step needs
only the rows of its batch; :class:`GatheredLightGCNOperator` gathers them and scatters their
gradients back in one pass (:func:`propagate_rows`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.models import LightGCN


def bipartite_edge_index(users: Tensor, items: Tensor, num_users: int) -> Tensor:
    """The undirected user-item graph as a PyG ``edge_index`` over ``num_users + num_items`` nodes.

    Users are nodes ``0..num_users-1``; item ``i`` is node ``num_users + i``. Both directions are
    included (what PyG's default LightGCN propagation expects).
    """
    u = users.long()
    i = items.long() + num_users
    return torch.stack([torch.cat([u, i]), torch.cat([i, u])])


def normalized_adjacency(
    users: Tensor, items: Tensor, num_users: int, num_items: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    r"""The symmetric normalised adjacency :math:`D^{-1/2} A D^{-1/2}` as a ``torch.sparse_csr`` tensor.

    Duplicate (user, item) pairs count once. Nodes without edges have empty rows.

    Args:
        users (Tensor): User index of every training interaction.
        items (Tensor): Item index of every training interaction.
        num_users (int): Number of users.
        num_items (int): Number of items.
        dtype (torch.dtype, optional): Value dtype. (default: ``torch.float32``)

    Shapes:
        - **input:** users :math:`(E,)`, items :math:`(E,)`
        - **output:** :math:`(U + I, U + I)` sparse CSR with :math:`2E'` entries (:math:`E'` distinct pairs)
    """
    n = num_users + num_items
    device = users.device
    key = torch.unique(users.long() * num_items + items.long())  # sorted, deduplicated
    u = key // num_items
    i = key % num_items + num_users
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    order = torch.argsort(rows * n + cols)
    rows, cols = rows[order], cols[order]
    deg = torch.bincount(rows, minlength=n).to(dtype)
    inv_sqrt = deg.pow(-0.5)
    inv_sqrt[deg == 0] = 0.0
    values = inv_sqrt[rows] * inv_sqrt[cols]
    crow = torch.zeros(n + 1, dtype=torch.long, device=device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    if rows.numel() < 2**31 - 1 and n < 2**31 - 1:
        # int32 indices: the CPU (MKL) sparse kernels take them directly; int64 ones are converted
        # to int32 (copied) on every product, which costs as much as the product itself.
        crow, cols = crow.to(torch.int32), cols.to(torch.int32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, cols, values, size=(n, n), device=device, check_invariants=False)


def layer_polynomial(adj: Tensor, alphas: Sequence[float], x: Tensor) -> Tensor:
    r"""LightGCN's layer combination :math:`\sum_{l=0}^{L} \alpha_l \hat{A}^l x`, by Horner's scheme.

    .. math::
        \sum_{l=0}^{L} \alpha_l \hat{A}^l x
        = \alpha_0 x + \hat{A}\bigl(\alpha_1 x + \hat{A}(\alpha_2 x + \dots + \hat{A}\,\alpha_L x)\bigr)

    Each layer is one fused ``addmm`` (``alpha_l * x + adj @ r``) into a reused buffer. On the CPU,
    ``torch.sparse.mm(csr, dense)`` allocates, zero-fills and copies around its MKL kernel; the
    ``out=`` form skips that (about 2x faster per product on Gowalla). No intermediate layer is kept.
    """
    if len(alphas) == 1:
        return x * alphas[0]
    if x.device.type != "cpu":
        r = x * alphas[-1]
        for a in reversed(alphas[:-1]):
            r = torch.sparse.mm(adj, r).add_(x, alpha=a)
        return r
    # first step folds alpha_L into the product: r = alpha_{L-1} x + alpha_L (adj @ x)
    r = torch.addmm(x, adj, x, beta=alphas[-2], alpha=alphas[-1])
    buf = torch.empty_like(r)
    for a in reversed(alphas[:-2]):
        torch.addmm(x, adj, r, beta=a, out=buf)
        r, buf = buf, r
    return r


class LightGCNOperator(torch.autograd.Function):
    r""":math:`P x` with :math:`P = \sum_l \alpha_l \hat{A}^l` for a *symmetric* :math:`\hat{A}`.

    :math:`P` is a polynomial in a symmetric matrix, hence symmetric: the backward is
    :math:`P g`, the same three products as the forward, and nothing but ``adj`` is saved.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, adj: Tensor, alphas: tuple[float, ...]) -> Tensor:  # type: ignore[override]
        ctx.adj, ctx.alphas = adj, alphas  # type: ignore[attr-defined]
        return layer_polynomial(adj, alphas, x.contiguous())

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return layer_polynomial(ctx.adj, ctx.alphas, grad.contiguous()), None, None  # type: ignore[attr-defined]


class GatheredLightGCNOperator(torch.autograd.Function):
    r"""Rows of :math:`P x` (and optionally of :math:`x`) at several index tensors, in one function.

    Forward: :math:`(P x)[\mathrm{idx}_k]` for every ``k``, then :math:`x[\mathrm{idx}_k]` when
    ``with_ego``. Backward: the output gradients are scattered into one zero matrix
    :math:`D` (``index_add_``), :math:`P D` is computed once (symmetric :math:`P`), and the ego
    gradients are added in place. Autograd's generic path would instead allocate a full-size zero
    matrix per gather and per slice and sum them; at a Gowalla batch that dense traffic costs more
    than the sparse products.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, adj: Tensor, alphas: tuple[float, ...], with_ego: bool, *indices: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.adj, ctx.alphas, ctx.shape = adj, alphas, x.shape  # type: ignore[attr-defined]
        ctx.save_for_backward(*indices)
        out = layer_polynomial(adj, alphas, x.contiguous())
        rows = [out.index_select(0, idx.reshape(-1)).view(*idx.shape, x.size(1)) for idx in indices]
        if with_ego:
            rows += [x.index_select(0, idx.reshape(-1)).view(*idx.shape, x.size(1)) for idx in indices]
        return tuple(rows)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        indices = ctx.saved_tensors  # type: ignore[attr-defined]
        k = len(indices)
        shape = ctx.shape  # type: ignore[attr-defined]
        d = shape[1]
        scattered = torch.zeros(shape, dtype=_first(grads).dtype, device=_first(grads).device)
        for idx, g in zip(indices, grads[:k]):
            if g is not None:
                scattered.index_add_(0, idx.reshape(-1), g.reshape(-1, d))
        out = layer_polynomial(ctx.adj, ctx.alphas, scattered)  # type: ignore[attr-defined]
        for idx, g in zip(indices, grads[k:]):
            if g is not None:
                out.index_add_(0, idx.reshape(-1), g.reshape(-1, d))
        return (out, None, None, None, *([None] * k))


def _first(grads: Sequence[Tensor | None]) -> Tensor:
    return next(g for g in grads if g is not None)


def _fast_path(conv: torch.nn.Module, adj: Tensor) -> bool:
    """True when ``conv(x, adj)`` is exactly ``spmm(adj, x)``, so the symmetric product may replace it.

    That holds for an :class:`LGConv` built with ``normalize=False`` and ``aggr='add'`` fed a
    sparse adjacency: :meth:`LGConv.forward` then skips ``gcn_norm`` and ``propagate`` dispatches
    to ``message_and_aggregate`` = ``spmm(adj_t, x, reduce='sum')`` (``adj_t == adj`` here).
    """
    return (
        type(conv) is LGConv
        and not conv.normalize
        and conv.aggr == "add"
        and adj.layout in (torch.sparse_csr, torch.sparse_coo)
    )


def _operator_alphas(lightgcn: LightGCN, adj: Tensor, symmetric: bool) -> tuple[float, ...] | None:
    """The layer weights when the whole propagation is :math:`P x` with a symmetric ``adj``, else ``None``.

    The weights are read back from ``lightgcn.alpha`` once and cached against the buffer's identity
    and version (``load_state_dict`` copies in place and bumps the version): on a GPU, reading them
    on every step would block the host on the device once per step.
    """
    alpha = lightgcn.alpha
    if not symmetric or alpha.requires_grad or not all(_fast_path(c, adj) for c in lightgcn.convs):
        return None
    key = (alpha.data_ptr(), alpha.device, alpha._version)
    cached = getattr(lightgcn, "_graphrec_alphas", None)
    if cached is None or cached[0] != key:
        cached = (key, tuple(float(a) for a in alpha.tolist()))
        lightgcn._graphrec_alphas = cached  # type: ignore[assignment]
    return cached[1]


def propagate(lightgcn: LightGCN, x0: Tensor, adj: Tensor, symmetric: bool = True) -> Tensor:
    r"""Push layer-0 node embeddings ``x0`` through a PyG LightGCN's layers and combine with its ``alpha``.

    .. math::
        \mathbf{X} = \sum_{l=0}^{L} \alpha_l \mathbf{X}^{(l)}, \qquad \mathbf{X}^{(l+1)} = \mathrm{conv}_l(\mathbf{X}^{(l)}, \hat{A})

    This is :meth:`LightGCN.get_embedding` with a caller-chosen ``x0`` (PyG's method always starts
    from ``lightgcn.embedding.weight``), so a fused model can feed id embeddings plus projected text
    features. We use the model's own ``convs`` and ``alpha`` rather than re-implementing LightGCN.
    When :func:`_fast_path` proves every conv is ``spmm(adj, x)`` and ``symmetric`` says the
    adjacency is symmetric, the whole sum is the linear operator :math:`P = \sum_l \alpha_l \hat{A}^l`
    and runs as :class:`LightGCNOperator` (same values, a transpose-free backward, no stored
    layers). Any other conv / adjacency goes through ``conv(x, adj)`` layer by layer.

    Args:
        lightgcn (LightGCN): The PyG model (its ``convs`` and ``alpha`` are used; its embedding is not).
        x0 (Tensor): Layer-0 embeddings of all nodes.
        adj (Tensor): Adjacency fed to the convs: a pre-normalised sparse matrix (with
            ``LightGCN(normalize=False)``) or an ``edge_index`` (with ``normalize=True``).
        symmetric (bool, optional): Whether ``adj`` is symmetric (enables the fast path).
            (default: ``True``)

    Shapes:
        - **input:** x0 :math:`(N, F)`
        - **output:** :math:`(N, F)`
    """
    alphas = _operator_alphas(lightgcn, adj, symmetric)
    if alphas is not None:
        return LightGCNOperator.apply(x0, adj, alphas)
    out = x0 * lightgcn.alpha[0]
    x = x0
    for layer, conv in enumerate(lightgcn.convs):
        x = conv(x, adj)
        out = out + x * lightgcn.alpha[layer + 1]
    return out


def propagate_rows(
    lightgcn: LightGCN, x0: Tensor, adj: Tensor, indices: Sequence[Tensor], with_ego: bool = True, symmetric: bool = True
) -> tuple[list[Tensor], list[Tensor]]:
    r"""Rows of the propagated embeddings (and of ``x0``) at several index tensors: one training step's needs.

    Equals ``out = propagate(lightgcn, x0, adj)`` followed by ``[out[i] for i in indices]`` and
    ``[x0[i] for i in indices]``, values and gradients; on the fast path it runs as one
    :class:`GatheredLightGCNOperator` whose backward scatters once and propagates once.

    Args:
        lightgcn (LightGCN): The PyG model.
        x0 (Tensor): Layer-0 embeddings of all nodes.
        adj (Tensor): Adjacency, as for :func:`propagate`.
        indices (Sequence[Tensor]): Node index tensors of any shape.
        with_ego (bool, optional): Also return the ``x0`` rows. (default: ``True``)
        symmetric (bool, optional): Whether ``adj`` is symmetric. (default: ``True``)

    Shapes:
        - **input:** x0 :math:`(N, F)`, ``indices[k]`` any shape :math:`S_k`
        - **output:** lists of :math:`(*S_k, F)` tensors (the second empty without ``with_ego``)
    """
    alphas = _operator_alphas(lightgcn, adj, symmetric)
    if alphas is not None:
        rows = GatheredLightGCNOperator.apply(x0, adj, alphas, with_ego, *indices)
        k = len(indices)
        return list(rows[:k]), list(rows[k:])
    out = propagate(lightgcn, x0, adj, symmetric=symmetric)
    return [out[i] for i in indices], ([x0[i] for i in indices] if with_ego else [])
