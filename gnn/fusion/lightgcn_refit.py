r"""The served LightGCN part, retrained on every interaction with the settings chosen on validation.

The LightGCN checkpoint given to ``graphrec fit --lightgcn`` was trained on the training part, and its
epoch count was chosen on the validation part (early stopping). The fusion weight :math:`\lambda` of its
part is chosen on the validation part too. The served model must then be fitted on all the data, as the
graph filter is: :func:`refit_lightgcn` trains the same recipe (the checkpoint's
:class:`gnn.config.TrainConfig`, its seed included) on the union of the named parts for the
checkpoint's best epoch count, with no validation and no early stopping, and returns its part
(:func:`gnn.fusion.lightgcn_part.lightgcn_factors`) row-aligned with the data's items.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch

from gnn.checkpoint import Checkpoint
from gnn.data import InteractionData, SplitPart
from gnn.fusion.lightgcn_part import EmbeddingPart, lightgcn_factors
from gnn.holdout import merge_parts
from gnn.train import create_model, train_model
from graphrec.errors import ModelError


def refit_data(data: InteractionData, parts: Sequence[str]) -> InteractionData:
    """``data`` whose training part is the union of ``parts``, with no validation or test part."""
    empty = SplitPart(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    return dataclasses.replace(data, train=merge_parts(data, tuple(parts)), val=empty, test=empty)


def refit_lightgcn(checkpoint: Checkpoint, data: InteractionData, parts: Sequence[str], *, device: str = "auto",
                   progress: bool = False) -> EmbeddingPart:
    """Retrain ``checkpoint``'s LightGCN on ``data``'s ``parts`` for its best epoch count; its live part.

    Args:
        checkpoint: A LightGCN trained by :func:`gnn.train.train_model` (its config and best epoch are
            in its metadata) on ``data``'s training part.
        data: The interactions (the vocabulary of the returned rows).
        parts: Split parts to train on, e.g. ``("train", "val", "test")``.
        device: ``auto`` (a GPU when present), ``cpu`` or ``cuda``.
        progress: Show the training progress bar.

    Raises:
        ModelError: The checkpoint has no training config or best epoch, or is not a LightGCN.
    """
    config, epochs = checkpoint.config, checkpoint.meta.best_epoch
    if config is None or not epochs:
        raise ModelError(f"LightGCN checkpoint {checkpoint.meta.version} records no training config or best epoch, so it "
                         "cannot be retrained on every interaction: train it with `graphrec train`, or keep its "
                         "training-part model (`graphrec fit --no-lightgcn-refit`)")
    if config.model != "lightgcn":
        raise ModelError(f"checkpoint {checkpoint.meta.version} was trained as {config.model!r}, not lightgcn")
    everything = refit_data(data, parts)
    settings = config.model_copy(update={"epochs": int(epochs), "patience": 0, "device": device})
    t0 = time.perf_counter()
    result = train_model(create_model(settings, everything), everything, settings, progress=progress)
    p, q = lightgcn_factors(result.model.cpu())
    meta = {"dataset": data.dataset, "snapshot_hash": data.snapshot_hash, "refit_of": checkpoint.meta.version,
            "trained_on": list(parts), "interactions": len(everything.train), "epochs": int(epochs),
            "seed": settings.seed, "seconds": round(time.perf_counter() - t0, 1), "dim": int(p.shape[1]),
            "items_known": int(data.num_items)}
    return EmbeddingPart(in_factors=p, out_factors=q, source=f"{checkpoint.meta.version}+refit", meta=meta)


__all__ = ["refit_data", "refit_lightgcn"]
