r"""Cold start: collaborative-space vectors for items with no interactions (from their text) and
for users with no history (from a few liked items and/or free text), without retraining.

A :class:`ColdStartHead` is a learned linear projection from an item's frozen feature vectors
(text vector, plus any ``feat_*`` blocks) to the final item embedding space of a trained model.
It is fitted after training with BPR against the model's frozen final user embeddings:

.. math::
    \hat{\mathbf{e}}_i = \mathbf{G}\,[\mathbf{t}_i; \mathbf{f}_i], \qquad
    \mathcal{L} = -\sum_{(u,i,j)} \ln \sigma\big(\mathbf{e}_u^\top \hat{\mathbf{e}}_i - \mathbf{e}_u^\top \hat{\mathbf{e}}_j\big)
    + \lambda \lVert \mathbf{G} \rVert^2

so a new item is scored exactly like a trained one, :math:`\mathbf{e}_u^\top \hat{\mathbf{e}}_i`.

Serving API::

    cs = ColdStart.from_checkpoint("~/.cache/graphrec/models/fusion-ml")
    vecs = cs.item_vectors(["Interstellar (2014). Genres: Sci-Fi. Tags: space, wormhole."])
    u = cs.user_vector(liked_item_ids=["1", "260"], text="space adventure with robots")
    scores = cs.item_embeddings @ u
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import Tensor

from graphrec.errors import InvalidArgumentError, ModelError, TextModelError, UnknownItemError
from gnn.fusion.scores import ScoreFusion
from gnn.text.encoder import EncoderConfig, TextEncoder
from gnn.text.recipe import TextRecipe, build_text

CHECKPOINT_FILE = "fusion.pt"


class HeadConfig(BaseModel):
    """Hyperparameters of :func:`fit_cold_head`."""

    epochs: int = Field(30, gt=0, description="BPR epochs over the training interactions.")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate.")
    reg: float = Field(1e-4, ge=0, description="L2 weight on G.")
    batch_size: int = Field(8192, gt=0, description="Triples per step.")
    seed: int = Field(2020, description="Seed.")


class ColdStartHead(torch.nn.Module):
    r"""Linear projection of concatenated item features to the collaborative embedding space.

    Args:
        in_dim (int): Total feature dimension.
        embedding_dim (int): Collaborative embedding dimension.

    Shapes:
        - **input:** :math:`(N, F)`
        - **output:** :math:`(N, d)`
    """

    def __init__(self, in_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_dim, embedding_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero init (the ridge warm start of :func:`fit_cold_head` overwrites it)."""
        torch.nn.init.zeros_(self.linear.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


def fit_cold_head(
    features: np.ndarray,
    item_embeddings: np.ndarray,
    user_embeddings: np.ndarray,
    train_users: np.ndarray,
    train_items: np.ndarray,
    config: HeadConfig | None = None,
) -> ColdStartHead:
    """Fit :class:`ColdStartHead` on warm items: ridge warm start to their embeddings, then BPR.

    Args:
        features: ``(I, F)`` item features (text vector, extra blocks), all items.
        item_embeddings: ``(I, d)`` trained final item embeddings (ridge target for warm items).
        user_embeddings: ``(U, d)`` trained final user embeddings (frozen).
        train_users: User index of each training interaction.
        train_items: Item index of each training interaction.
        config: Hyperparameters.
    """
    cfg = config or HeadConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    X = torch.as_tensor(features, dtype=torch.float32)
    E = torch.as_tensor(item_embeddings, dtype=torch.float32)
    U = torch.as_tensor(user_embeddings, dtype=torch.float32)
    head = ColdStartHead(X.shape[1], E.shape[1])
    warm = torch.as_tensor(np.unique(train_items), dtype=torch.long)
    if len(warm):
        Xw, Ew = X[warm], E[warm]
        A = Xw.T @ Xw + 1.0 * torch.eye(X.shape[1])
        head.linear.weight.data = torch.linalg.solve(A, Xw.T @ Ew).T.contiguous()
    users = torch.as_tensor(train_users, dtype=torch.long)
    items = torch.as_tensor(train_items, dtype=torch.long)
    if len(users) == 0:
        return head
    cand = warm  # negatives drawn from warm items: cold items are unknown at fit time
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(users), generator=gen)
        negs = cand[torch.randint(0, len(cand), (len(users),), generator=gen)]
        for start in range(0, len(perm), cfg.batch_size):
            b = perm[start : start + cfg.batch_size]
            u = U[users[b]]
            ei, ej = head(X[items[b]]), head(X[negs[b]])
            loss = torch.nn.functional.softplus((u * ej).sum(-1) - (u * ei).sum(-1)).mean()
            loss = loss + cfg.reg * head.linear.weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    return head


class FusionCheckpoint(BaseModel):
    """Metadata stored with a fusion model (everything but tensors)."""

    model_type: str
    init_kwargs: dict[str, Any]
    encoder: EncoderConfig
    encoder_identity: str
    recipe: TextRecipe
    feature_columns: list[str] = Field(default_factory=list, description="Extra feat_* item columns, in block order after text.")
    item_ids: list[str]
    user_ids: list[str]
    created_at: float = Field(default_factory=time.time)
    metrics: dict[str, Any] = Field(default_factory=dict)
    score_fusion: ScoreFusion | None = Field(
        None, description="Validation-fitted weights to combine this model's scores with content and popularity "
        "(the default 'fusion_both' method; see gnn.fusion.scores).")


def save_fusion_checkpoint(
    directory: str | os.PathLike[str],
    model: torch.nn.Module,
    head: ColdStartHead,
    meta: FusionCheckpoint,
) -> Path:
    """Save a fusion model, its cold-start head, its final embeddings and metadata in one file.

    Returns:
        The checkpoint file path (``<directory>/fusion.pt``).
    """
    d = Path(directory).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        model.eval()
        ue, ie = model.embeddings()  # type: ignore[operator]
    payload = {
        "meta": meta.model_dump(mode="json"),
        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "head": {k: v.cpu() for k, v in head.state_dict().items()},
        "user_embeddings": ue.detach().cpu(),
        "item_embeddings": ie.detach().cpu(),
    }
    tmp = d / (CHECKPOINT_FILE + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, d / CHECKPOINT_FILE)
    return d / CHECKPOINT_FILE


def _encoder_like_training(meta: FusionCheckpoint) -> TextEncoder:
    """The checkpoint's encoder; with ``precision="auto"`` the precision whose identity matches the one
    the model was trained with (a checkpoint from before the CPU int8 default keeps fp32)."""
    encoder = TextEncoder(meta.encoder)
    if meta.encoder.precision == "auto" and encoder.identity != meta.encoder_identity:
        for precision in ("fp32", "int8", "fp16"):
            try:
                alt = TextEncoder(meta.encoder.model_copy(update={"precision": precision}))
                if alt.identity == meta.encoder_identity:
                    return alt
            except TextModelError:
                continue
    return encoder


class ColdStart:
    """Cold-start inference for serving: new item vectors and history-less user vectors.

    Build with :meth:`from_checkpoint`. Vectors live in the model's final embedding space, so
    ``user_vec @ item_vec`` is comparable with the trained model's scores.

    Args:
        meta (FusionCheckpoint): Checkpoint metadata.
        head (ColdStartHead): The fitted projection.
        user_embeddings (np.ndarray): ``(U, d)`` final user embeddings.
        item_embeddings (np.ndarray): ``(I, d)`` final item embeddings.
        encoder (TextEncoder, optional): Encoder to use (default: built from ``meta.encoder``; loaded lazily).
        cache_dir (str, optional): Text-vector cache folder (default: none).
    """

    def __init__(
        self,
        meta: FusionCheckpoint,
        head: ColdStartHead,
        user_embeddings: np.ndarray,
        item_embeddings: np.ndarray,
        encoder: TextEncoder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.meta = meta
        self.head = head.eval()
        self.user_embeddings = np.asarray(user_embeddings, dtype=np.float32)
        self.item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
        self.encoder = encoder or _encoder_like_training(meta)
        if encoder is not None and encoder.identity != meta.encoder_identity:
            raise ModelError(f"encoder {encoder.identity} differs from the model's {meta.encoder_identity}")
        self.cache_dir = cache_dir
        self._item_index = {i: n for n, i in enumerate(meta.item_ids)}
        self._extra_dim = head.linear.in_features - self.encoder.dim

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], encoder: TextEncoder | None = None, cache_dir: str | os.PathLike[str] | None = None
    ) -> "ColdStart":
        """Load from a folder written by :func:`save_fusion_checkpoint` (or the ``fusion.pt`` file).

        Raises:
            ModelError: Missing or unreadable checkpoint.
        """
        p = Path(path).expanduser()
        f = p / CHECKPOINT_FILE if p.is_dir() else p
        try:
            payload = torch.load(f, map_location="cpu", weights_only=False)
            meta = FusionCheckpoint.model_validate(payload["meta"])
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise ModelError(f"cannot read fusion checkpoint {f}: {e}") from e
        w = payload["head"]["linear.weight"]
        head = ColdStartHead(w.shape[1], w.shape[0])
        head.load_state_dict(payload["head"])
        return cls(meta, head, payload["user_embeddings"].numpy(), payload["item_embeddings"].numpy(),
                   encoder=encoder, cache_dir=cache_dir)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.cache_dir is not None:
            from gnn.text.cache import encode_with_cache

            return encode_with_cache(self.encoder, texts, self.cache_dir)[0]
        return self.encoder.encode(texts)

    def project(self, text_vectors: np.ndarray, extra_features: np.ndarray | None = None) -> np.ndarray:
        """Project precomputed text vectors (and extra feature blocks, zeros when absent)."""
        x = np.asarray(text_vectors, dtype=np.float32)
        if self._extra_dim > 0:
            extra = np.zeros((len(x), self._extra_dim), np.float32) if extra_features is None else np.asarray(extra_features, np.float32)
            if extra.shape != (len(x), self._extra_dim):
                raise InvalidArgumentError(f"extra features must have shape ({len(x)}, {self._extra_dim})")
            x = np.concatenate([x, extra], 1)
        with torch.no_grad():
            return self.head(torch.as_tensor(x)).numpy()

    def item_vectors(
        self, texts: Sequence[str] | Sequence[Mapping[str, Any]], extra_features: np.ndarray | None = None
    ) -> np.ndarray:
        """Collaborative-space vectors of new items from their text.

        Args:
            texts: Item texts, or item column mappings (``title``, ``genres``...) turned into text
                with the model's recipe.
            extra_features: ``(N, F_extra)`` concatenated ``feat_*`` blocks, when the model used them.

        Returns:
            ``(N, d)`` float32; score with ``user_vector @ item_vectors.T``.
        """
        items = list(texts)
        strs = [t if isinstance(t, str) else build_text(t, self.meta.recipe) for t in items]
        if not strs:
            return np.zeros((0, self.item_embeddings.shape[1]), np.float32)
        return self.project(self._encode(strs), extra_features)

    def user_vector(self, liked_item_ids: Sequence[str] = (), text: str | None = None) -> np.ndarray:
        """A vector for a user with no history: mean of liked items' embeddings and/or the projected text.

        Args:
            liked_item_ids: Ids of items the user likes (known items of the model).
            text: Free-text description of what the user wants.

        Returns:
            ``(d,)`` float32.

        Raises:
            InvalidArgumentError: Neither liked items nor text given.
            UnknownItemError: A liked item id is not in the model.
        """
        parts = []
        if liked_item_ids:
            missing = [i for i in liked_item_ids if str(i) not in self._item_index]
            if missing:
                raise UnknownItemError(f"unknown item ids: {missing[:5]}")
            idx = [self._item_index[str(i)] for i in liked_item_ids]
            parts.append(self.item_embeddings[idx].mean(0))
        if text and text.strip():
            v = self.item_vectors([text.strip()])[0]
            if parts:  # match the scale of the liked-items part
                v = v * (np.linalg.norm(parts[0]) / max(np.linalg.norm(v), 1e-9))
            parts.append(v)
        if not parts:
            raise InvalidArgumentError("give liked_item_ids and/or text")
        return np.mean(parts, axis=0).astype(np.float32)
