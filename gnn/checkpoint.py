"""Checkpoints of any registered :class:`gnn.models.Recommender`.

A checkpoint is a folder::

    <dir>/model.pt      torch.save({"meta": ..., "state_dict": ..., "user_ids": [...], "item_ids": [...]})
    <dir>/meta.json     the same meta as JSON (model type, constructor kwargs, dataset, snapshot hash,
                        version, validation metrics, config)
    <dir>/config.json   the training config (when the model was trained)

Reloading rebuilds the model from its registered type and constructor kwargs and loads the
state dict, so any model registered with :func:`gnn.models.register_model` round-trips.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from graphrec.clock import utc_now_iso
from graphrec.errors import ModelError, UnknownItemError, UnknownUserError
from gnn.config import TrainConfig
from gnn.models import Recommender, build_model
from gnn.vocab import Vocabulary

CHECKPOINT_FILE = "model.pt"
CHECKPOINT_FORMAT = 1

TORCH_LOAD_ERRORS: tuple[type[Exception], ...] = (
    OSError, RuntimeError, EOFError, ValueError, TypeError, pickle.UnpicklingError, struct.error,
)
"""What ``torch.load`` raises on a missing, truncated or foreign file."""


class CheckpointMeta(BaseModel):
    """Everything about a checkpoint except its tensors."""

    format_version: int = CHECKPOINT_FORMAT
    model_type: str
    model_kwargs: dict[str, Any]
    dataset: str
    snapshot_hash: str
    version: str = Field(description="Model version (folder name), e.g. 20261122T130000Z-lightgcn.")
    created_at: str
    config: dict[str, Any] | None = None
    val_metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)
    best_epoch: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, CPU unless asked) and its vocabularies."""

    model: Recommender
    meta: CheckpointMeta
    users: Vocabulary
    items: Vocabulary
    path: Path

    @property
    def config(self) -> TrainConfig | None:
        """The training config, when the model was trained."""
        return TrainConfig.model_validate(self.meta.config) if self.meta.config else None


def new_version(model_type: str) -> str:
    """A sortable model version string: ``<UTC timestamp to the millisecond>-<model type>``
    (ISO 8601 basic format, e.g. ``20261207T133612.045Z-live``; two fits in the same second differ)."""
    now = datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z-{model_type}"


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: Recommender,
    *,
    users: Vocabulary,
    items: Vocabulary,
    dataset: str,
    snapshot_hash: str,
    version: str | None = None,
    config: TrainConfig | None = None,
    val_metrics: dict[str, float] | None = None,
    test_metrics: dict[str, float] | None = None,
    best_epoch: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temp folder renamed into place).

    Raises:
        ModelError: Unregistered model, vocabulary / model size mismatch, or an OS error.
    """
    if not model.model_type:
        raise ModelError(f"{type(model).__name__} is not registered with @register_model")
    if len(users) != model.num_users or len(items) != model.num_items:
        raise ModelError("vocabulary sizes do not match the model")
    meta = CheckpointMeta(
        model_type=model.model_type,
        model_kwargs=dict(model.init_kwargs),
        dataset=dataset,
        snapshot_hash=snapshot_hash,
        version=version or new_version(model.model_type),
        created_at=utc_now_iso(),
        config=config.model_dump() if config is not None else None,
        val_metrics=val_metrics or {},
        test_metrics=test_metrics or {},
        best_epoch=best_epoch,
        extra=extra or {},
    )
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(
            {"meta": meta.model_dump(), "state_dict": state, "user_ids": users.ids, "item_ids": items.ids},
            tmp / CHECKPOINT_FILE,
        )
        (tmp / "meta.json").write_text(meta.model_dump_json(indent=2))
        if config is not None:
            config.save(tmp / "config.json")
        if target.exists():
            # keep side files (curves, history) written earlier next to the checkpoint
            for f in target.iterdir():
                if not (tmp / f.name).exists() and f.is_file():
                    shutil.copy2(f, tmp / f.name)
            shutil.rmtree(target)
        tmp.rename(target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"cannot write checkpoint to {target}: {e}") from e
    return target


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint folder (or its ``model.pt``).

    Raises:
        ModelError: Missing / unreadable file, unknown model type or mismatching state.
    """
    p = Path(path)
    file = p / CHECKPOINT_FILE if p.is_dir() else p
    try:
        blob = torch.load(file, map_location=map_location, weights_only=True)
    except TORCH_LOAD_ERRORS as e:
        raise ModelError(f"cannot read checkpoint {file}: {e}") from e
    meta = CheckpointMeta.model_validate(blob["meta"])
    if meta.format_version != CHECKPOINT_FORMAT:
        raise ModelError(f"checkpoint {file} has format {meta.format_version}, expected {CHECKPOINT_FORMAT}")
    model = build_model(meta.model_type, **meta.model_kwargs)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"checkpoint {file} does not fit model {meta.model_type}: {e}") from e
    model.to(map_location)
    model.eval()
    users = Vocabulary(blob["user_ids"], kind="user", not_found=UnknownUserError)
    items = Vocabulary(blob["item_ids"], kind="item", not_found=UnknownItemError)
    return Checkpoint(model=model, meta=meta, users=users, items=items, path=file.parent)


def read_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """Read only ``meta.json`` of a checkpoint folder (no tensors)."""
    try:
        return CheckpointMeta.model_validate(json.loads((Path(path) / "meta.json").read_text()))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read checkpoint meta in {path}: {e}") from e
