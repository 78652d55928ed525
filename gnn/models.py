r"""The model interface shared by the trainer, the evaluator and checkpoints, and the models themselves.

Every recommender is a :class:`Recommender` (a ``torch.nn.Module``): it knows ``num_users`` /
``num_items``, holds the training interactions as buffers (``train_users``, ``train_items``; set
with :meth:`Recommender.set_interactions`) and returns a batched scorer. Trainable embedding models
are :class:`RecModel`\ s, which add :meth:`RecModel.embeddings` (final user / item embeddings) and
:meth:`RecModel.ego` (layer-0 embeddings of a batch, for the L2 term of the loss).

How to plug in a new model (e.g. feature-level text fusion):

1. Subclass :class:`RecModel`; the constructor takes plain JSON-serialisable scalars / lists,
   calls ``super().__init__(num_users, num_items)``, stores them in ``self.init_kwargs`` (a
   dict: the checkpoint rebuilds the model with ``cls(**init_kwargs)``), builds submodules and
   ends with ``self.reset_parameters()``. Tensors that are not learned (e.g. frozen text
   features) are buffers so ``.to(device)`` and checkpoints carry them.
2. Implement ``embeddings()`` and ``ego(users, items)``. A LightGCN variant builds its layer-0
   node matrix ``x0`` (``num_users + num_items`` rows, users first) and returns
   ``split(propagate(self.lightgcn, x0, self.adjacency()))`` (see :func:`gnn.propagation.propagate`).
3. Decorate the class with ``@register_model("name")``. Then :func:`gnn.train.train_model`,
   :class:`gnn.evaluate.Evaluator`, :func:`gnn.checkpoint.save_checkpoint` /
   :func:`gnn.checkpoint.load_checkpoint` and :func:`gnn.embeddings.export_embeddings` work
   unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.models import LightGCN

from graphrec.errors import ModelError
from gnn.propagation import normalized_adjacency, propagate, propagate_rows

Similarity = Literal["dot", "cosine"]
"""How an embedding model scores (user, item): ``dot`` product of the final embeddings, or their
``cosine`` (the final embeddings are L2-normalised, then dotted)."""

SIMILARITIES: tuple[str, ...] = ("dot", "cosine")


def check_similarity(similarity: str) -> str:
    """Validate a similarity name.

    Raises:
        ModelError: Not ``dot`` or ``cosine``.
    """
    if similarity not in SIMILARITIES:
        raise ModelError(f"unknown similarity {similarity!r}; use one of {list(SIMILARITIES)}")
    return similarity


class BatchEmbeddings(NamedTuple):
    """One training batch's final (``users``, ``pos``, ``neg``) and layer-0 (``*0``) embeddings."""

    users: Tensor
    pos: Tensor
    neg: Tensor
    users0: Tensor
    pos0: Tensor
    neg0: Tensor


Scorer = Callable[[Tensor], Tensor]
"""Maps a batch of user indices ``(B,)`` to scores over all items ``(B, num_items)``."""

MODELS: dict[str, type[Recommender]] = {}
"""Registry of recommender classes by ``model_type`` name (used to reload checkpoints)."""

_R = TypeVar("_R", bound="type[Recommender]")


def register_model(name: str) -> Callable[[_R], _R]:
    """Class decorator registering a :class:`Recommender` under ``name``."""

    def deco(cls: _R) -> _R:
        if name in MODELS and MODELS[name] is not cls:
            raise ModelError(f"model type {name!r} is already registered")
        cls.model_type = name
        MODELS[name] = cls
        return cls

    return deco


def build_model(model_type: str, **kwargs: Any) -> Recommender:
    """Instantiate a registered model.

    Raises:
        ModelError: Unknown model type.
    """
    # Models registered in other packages (text fusion) register on import.
    if model_type not in MODELS:
        _import_plugins()
    cls = MODELS.get(model_type)
    if cls is None:
        raise ModelError(f"unknown model type {model_type!r}; known: {sorted(MODELS)}")
    return cls(**kwargs)


def _import_plugins() -> None:
    import importlib

    import gnn.baselines  # noqa: F401

    for name in ("gnn.filters", "gnn.fusion"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


class Recommender(torch.nn.Module):
    """Base class of every recommender (embedding models and baselines).

    Args:
        num_users (int): Number of users (indices ``0..num_users-1``).
        num_items (int): Number of items.
    """

    model_type: ClassVar[str] = ""
    trainable: ClassVar[bool] = False

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        if num_users < 0 or num_items <= 0:
            raise ModelError(f"need num_users >= 0 and num_items > 0, got {num_users}, {num_items}")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.init_kwargs: dict[str, Any] = {"num_users": self.num_users, "num_items": self.num_items}
        self.register_buffer("train_users", torch.zeros(0, dtype=torch.long))
        self.register_buffer("train_items", torch.zeros(0, dtype=torch.long))

    def set_interactions(self, users: Tensor, items: Tensor) -> None:
        """Store the training interactions (graph of LightGCN, history for masking, counts of baselines)."""
        users = torch.as_tensor(users, dtype=torch.long, device=self.train_users.device)
        items = torch.as_tensor(items, dtype=torch.long, device=self.train_items.device)
        if users.shape != items.shape or users.dim() != 1:
            raise ModelError("users and items must be 1-d tensors of equal length")
        if users.numel() and (users.min() < 0 or users.max() >= self.num_users or items.min() < 0 or items.max() >= self.num_items):
            raise ModelError("interaction indices out of range")
        self.train_users = users
        self.train_items = items

    def fit(self) -> None:
        """Compute non-learned state from the interactions (baselines). Learned models: no-op."""

    def scorer(self) -> Scorer:
        """Return a function scoring user batches against all items (computed once, no grad)."""
        raise NotImplementedError

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Buffers whose length depends on the data are resized to the stored ones before loading.
        for name in self._resizable_buffers():
            key = prefix + name
            if key in state_dict:
                cur = getattr(self, name)
                setattr(self, name, torch.empty_like(state_dict[key], device=cur.device, dtype=state_dict[key].dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _resizable_buffers(self) -> tuple[str, ...]:
        """Names of buffers whose shape is data-dependent (subclasses extend)."""
        return ("train_users", "train_items")


class RecModel(Recommender):
    """A trainable embedding recommender: scores are dot products of final user and item embeddings.

    Subclasses implement :meth:`embeddings` and :meth:`ego`; :meth:`adjacency` gives the normalised
    user-item adjacency built from the training interactions (cached per device). A model with
    ``similarity == "cosine"`` returns L2-normalised final embeddings from :meth:`embeddings` and
    :meth:`batch_embeddings` (see :meth:`finalize`), so every dot product downstream (loss,
    :meth:`scorer`, exported vectors) is a cosine.
    """

    trainable: ClassVar[bool] = True
    similarity: str = "dot"
    """``dot`` or ``cosine``; subclasses that support cosine set it per instance (and in ``init_kwargs``)."""

    def finalize(self, x: Tensor) -> Tensor:
        r"""Apply the model's similarity to final embeddings: identity for ``dot``,
        :math:`\mathbf{x} / \max(\lVert \mathbf{x} \rVert_2, \epsilon)` row-wise for ``cosine``."""
        return F.normalize(x, dim=-1) if self.similarity == "cosine" else x

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__(num_users, num_items)
        self._adj_cache: tuple[tuple[Any, ...], Tensor] | None = None

    def adjacency(self) -> Tensor:
        r"""The symmetric normalised adjacency :math:`D^{-1/2} A D^{-1/2}` of the training graph (sparse CSR)."""
        key = (self.train_users.device, self.train_users.data_ptr(), self.train_users.numel(), self.train_items.data_ptr())
        if self._adj_cache is None or self._adj_cache[0] != key:
            adj = normalized_adjacency(self.train_users, self.train_items, self.num_users, self.num_items)
            self._adj_cache = (key, adj)
        return self._adj_cache[1]

    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final user embeddings ``(num_users, d)`` and item embeddings ``(num_items, d)``."""
        raise NotImplementedError

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Layer-0 (learned input) embeddings of the given users and items (any index shapes)."""
        raise NotImplementedError

    def batch_embeddings(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchEmbeddings:
        """Final and layer-0 embeddings of one training batch (what the loss and its L2 term need).

        The default gathers from :meth:`embeddings` and :meth:`ego`; propagation models override it
        with :func:`gnn.propagation.propagate_rows`, which gives the same values and gradients with
        one scatter in the backward.

        Shapes:
            - **input:** users :math:`(B,)`, pos :math:`(B,)`, neg :math:`(B, N)`
        """
        u_emb, i_emb = self.embeddings()
        u0, p0 = self.ego(users, pos)
        _, n0 = self.ego(users, neg)
        return BatchEmbeddings(u_emb[users], i_emb[pos], i_emb[neg], u0, p0, n0)

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores of (user, item) pairs.

        Shapes:
            - **input:** users :math:`(B,)`, items :math:`(B,)`
            - **output:** :math:`(B,)`
        """
        u, i = self.embeddings()
        return (u[users] * i[items]).sum(-1)

    @torch.no_grad()
    def scorer(self) -> Scorer:
        was_training = self.training
        self.eval()
        u, i = self.embeddings()
        self.train(was_training)
        u, i = u.detach(), i.detach()
        it = i.t().contiguous()

        def score(users: Tensor) -> Tensor:
            return u[users.to(u.device)] @ it

        return score


def init_id_embeddings(weight: Tensor, num_users: int, init_std: float | None) -> None:
    r"""Initialise a layer-0 ID table (``num_users`` user rows, then the item rows) in place.

    With ``init_std``: :math:`\mathcal{N}(0, \sigma^2)` for every entry (LightGCN's PyTorch code
    uses :math:`\sigma = 0.1`). With ``None``: Xavier-uniform of the user rows and of the item rows as
    two separate tables, :math:`\mathcal{U}(-b, b)` with :math:`b = \sqrt{6 / (n + d)}` for a table
    of :math:`n` rows, as LightGCN's TensorFlow code (the source of the paper's numbers)
    initialises its ``user_embedding`` and ``item_embedding`` (about 0.014 / 0.012 on Gowalla).

    Args:
        weight (Tensor): The ``(num_users + num_items, d)`` embedding weight.
        num_users (int): Number of user rows at the top of ``weight``.
        init_std (float, optional): Std of the normal init, or ``None`` for Xavier.
    """
    if init_std is not None:
        torch.nn.init.normal_(weight, std=init_std)
        return
    with torch.no_grad():
        for table in (weight[:num_users], weight[num_users:]):
            if table.shape[0]:
                torch.nn.init.xavier_uniform_(table)


@register_model("lightgcn")
class LightGCNRecommender(RecModel):
    r"""LightGCN from `"LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" <https://arxiv.org/abs/2002.02126>`_ (He et al., SIGIR 2020), as PyG's
    :class:`~torch_geometric.nn.models.LightGCN` fed a pre-normalised adjacency.

    .. math::
        \mathbf{e}^{(l+1)} = D^{-1/2} A D^{-1/2}\, \mathbf{e}^{(l)}, \qquad
        \mathbf{e} = \sum_{l=0}^{L} \alpha_l \mathbf{e}^{(l)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: ``64``)
        num_layers (int, optional): Propagation layers. (default: ``3``)
        init_std (float, optional): Std of the normal init of the layer-0 embeddings (the reference
            PyTorch implementation uses 0.1); ``None``: Xavier-uniform per table, as LightGCN's
            TensorFlow code (see :func:`init_id_embeddings`). (default: ``0.1``)
        similarity (str, optional): ``dot`` scores :math:`\mathbf{e}_u^\top \mathbf{e}_i`;
            ``cosine`` scores :math:`\mathbf{e}_u^\top \mathbf{e}_i / (\lVert\mathbf{e}_u\rVert
            \lVert\mathbf{e}_i\rVert)` (final embeddings L2-normalised). (default: ``"dot"``)

    Shapes:
        - **embeddings():** :math:`(U, d)`, :math:`(I, d)`
        - **forward:** users :math:`(B,)`, items :math:`(B,)` -> :math:`(B,)`
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 3,
        init_std: float | None = 0.1,
        similarity: Similarity = "dot",
    ) -> None:
        super().__init__(num_users, num_items)
        self.similarity = check_similarity(similarity)
        self.init_kwargs.update(embedding_dim=embedding_dim, num_layers=num_layers, init_std=init_std, similarity=similarity)
        self.init_std = init_std
        self.lightgcn = LightGCN(num_users + num_items, embedding_dim, num_layers, normalize=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the embeddings (see :func:`init_id_embeddings`)."""
        self.lightgcn.reset_parameters()
        init_id_embeddings(self.lightgcn.embedding.weight, self.num_users, self.init_std)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        out = self.finalize(propagate(self.lightgcn, self.lightgcn.embedding.weight, self.adjacency()))
        return out[: self.num_users], out[self.num_users :]

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        w = self.lightgcn.embedding.weight
        return w[users], w[items + self.num_users]

    def batch_embeddings(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchEmbeddings:
        offset = self.num_users
        finals, egos = propagate_rows(
            self.lightgcn, self.lightgcn.embedding.weight, self.adjacency(), (users, pos + offset, neg + offset)
        )
        return BatchEmbeddings(*(self.finalize(f) for f in finals), *egos)


@register_model("mf")
class MatrixFactorization(RecModel):
    r"""Matrix factorisation (trained with BPR: BPR-MF, Rendle et al., UAI 2009).

    .. math::
        \hat{y}_{ui} = \mathbf{p}_u^\top \mathbf{q}_i

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: ``64``)
        init_std (float, optional): Std of the normal init. (default: ``0.1``)
        similarity (str, optional): ``dot`` or ``cosine`` (embeddings L2-normalised before the
            dot product). (default: ``"dot"``)
    """

    def __init__(
        self, num_users: int, num_items: int, embedding_dim: int = 64, init_std: float = 0.1, similarity: Similarity = "dot"
    ) -> None:
        super().__init__(num_users, num_items)
        self.similarity = check_similarity(similarity)
        self.init_kwargs.update(embedding_dim=embedding_dim, init_std=init_std, similarity=similarity)
        self.init_std = init_std
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the embeddings."""
        torch.nn.init.normal_(self.user_embedding.weight, std=self.init_std)
        torch.nn.init.normal_(self.item_embedding.weight, std=self.init_std)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        return self.finalize(self.user_embedding.weight), self.finalize(self.item_embedding.weight)

    def ego(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        return self.user_embedding(users), self.item_embedding(items)
