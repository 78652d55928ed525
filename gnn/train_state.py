"""Resumable training state: what :func:`gnn.train.train_model` needs to continue a run exactly.

A state file is written after a completed epoch (at every evaluation and when training stops) and
holds:

- the epoch, the training config and the snapshot hash it was trained on;
- the model's and the Adam optimiser's state;
- the state of the training generator (every positive and negative is drawn from it);
- the early-stopping bookkeeping (best value, epoch, metrics and parameters; evaluations without
  improvement);
- the history so far, including metrics a caller's ``on_epoch`` added to the records;
- one *segment* per process that trained: first and last epoch, device, torch threads, start time.

Continuing on the same device type gives the parameters, losses and metrics of a run that was never
interrupted (``tests/unit/gnn/test_train_state.py``). On another device type the generator's state
cannot be carried over; it is reseeded from the seed and the epoch, the segment says so, and the run
goes on with other (equally random) draws.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from graphrec.errors import InvalidArgumentError, ModelError
from gnn.checkpoint import TORCH_LOAD_ERRORS
from gnn.config import TrainConfig

STATE_FILE = "train_state.pt"
STATE_FORMAT = 1

MAY_CHANGE_ON_RESUME = frozenset({"epochs", "device", "eval_every", "patience", "eval_batch_users"})
"""Config fields a resumed run may set differently; any other difference is refused."""


@dataclass
class TrainState:
    """Everything about a training run after epoch ``epoch`` (tensors on the CPU)."""

    epoch: int
    config: dict[str, Any]
    snapshot_hash: str
    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any]
    generator_state: Tensor
    generator_device: str
    best_value: float
    best_epoch: int | None
    best_metrics: dict[str, float]
    best_state: dict[str, Tensor] | None
    bad_evals: int
    history: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    format_version: int = STATE_FORMAT

    def check_resumable(self, config: TrainConfig, snapshot_hash: str) -> None:
        """Refuse to continue with other data or other training settings.

        Raises:
            InvalidArgumentError: The snapshot hash differs, or a config field outside
                :data:`MAY_CHANGE_ON_RESUME` does (all such fields are named).
        """
        if snapshot_hash != self.snapshot_hash:
            raise InvalidArgumentError(
                f"the training state was made on snapshot {self.snapshot_hash[:12]}, not {snapshot_hash[:12]}"
            )
        now = config.model_dump()
        changed = sorted(k for k in set(now) | set(self.config) if k not in MAY_CHANGE_ON_RESUME and now.get(k) != self.config.get(k))
        if changed:
            detail = ", ".join(f"{k}: {self.config.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise InvalidArgumentError(f"cannot resume with other training settings ({detail})")
        if self.epoch >= config.epochs:
            raise InvalidArgumentError(f"the training state is at epoch {self.epoch}; ask for more epochs than that to resume")


def state_path(path: str | os.PathLike[str]) -> Path:
    """The state file for ``path``: the path itself, or :data:`STATE_FILE` inside it when it is a folder
    (or has no suffix)."""
    p = Path(path)
    return p / STATE_FILE if p.is_dir() or not p.suffix else p


def save_train_state(path: str | os.PathLike[str], state: TrainState) -> Path:
    """Write ``state`` atomically (a temporary file renamed over the old one), so a run killed while
    saving leaves the previous state readable.

    Raises:
        ModelError: An OS error.
    """
    target = state_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(asdict(state), tmp)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot write the training state to {target}: {e}") from e
    return target


def load_train_state(path: str | os.PathLike[str]) -> TrainState:
    """Read a state written by :func:`save_train_state` (tensors on the CPU).

    Raises:
        ModelError: Missing or unreadable file, or another format version.
    """
    file = state_path(path)
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
        state = TrainState(**blob)
    except TORCH_LOAD_ERRORS as e:
        raise ModelError(f"cannot read the training state {file}: {e}") from e
    if state.format_version != STATE_FORMAT:
        raise ModelError(f"training state {file} has format {state.format_version}, expected {STATE_FORMAT}")
    return state


def cpu_copy(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached CPU copies of a state dict's tensors."""
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


def restore_generator(gen: torch.Generator, state: TrainState, seed: int) -> bool:
    """Put the saved generator state into ``gen``; reseed from ``(seed, epoch)`` when the device type
    differs. Returns whether the exact state was restored."""
    if gen.device.type == state.generator_device:
        gen.set_state(state.generator_state)
        return True
    gen.manual_seed(seed * 1_000_003 + state.epoch)
    return False
