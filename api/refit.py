"""The graphrec commands that fit and publish a dataset's default model, as background-job steps.

The one place that says what "the default model" is and how it is trained: the admin jobs
(:mod:`api.routes.admin`: ``/admin/train``, the refit after a replace ``/admin/reload``) and
``graphrec refit`` (run after ``graphrec load --mode replace``) all run these steps. Each step is the
argument list of one ``graphrec`` command, run in a subprocess: the service never trains inline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

TRAINER = "fit"
"""The default model's trainer: ``graphrec fit`` (a graph filter fused with the items' text and popularity, chosen
on validation and refitted on every interaction; users are scored from their live history). It is closed-form:
``epochs`` applies only to the epoch-trained models (``graphrec fuse`` / ``train``)."""

EPOCH_TRAINERS: frozenset[str] = frozenset({"fuse", "train"})

SPLIT_ARGS: tuple[str, ...] = ("--split", "per_user_temporal", "--param", "test_fraction=0.2", "--param", "val_fraction=0.1")
"""The snapshot split the default model trains on (per-user temporal, 10 % validation, 20 % test)."""


def train_steps(dataset: str, snapshot: str, out: str, *, epochs: int | None = None, extra: Sequence[str] = (),
                publish: bool = True, lightgcn: bool = False) -> list[list[str]]:
    """Export a snapshot of the active graph, train the default model on it, publish the checkpoint.

    Args:
        dataset: Dataset name.
        snapshot: Folder the snapshot is exported to.
        out: Checkpoint folder.
        epochs: Training epochs (default: the trainer's; with ``lightgcn``, the most LightGCN epochs).
        extra: More trainer arguments (checked by the caller).
        publish: Publish the checkpoint (the publish refuses one that does not cover the graph).
        lightgcn: Train LightGCN on the same snapshot first (``graphrec train --recipe default``, into
            ``<out>-lightgcn``) and give it to ``graphrec fit --lightgcn``, which fuses it with a weight
            chosen on validation and retrains it on every interaction when it gets one.

    Returns:
        The ``graphrec`` argument lists, in order.
    """
    ep = ["--epochs", str(epochs)] if epochs and TRAINER in EPOCH_TRAINERS else []
    steps = [["snapshot", "export", "--dataset", dataset, *SPLIT_ARGS, "--out", snapshot]]
    fused: list[str] = []
    if lightgcn:
        trained = f"{out}-lightgcn"
        steps.append(["train", "--snapshot", snapshot, "--recipe", "default", "--no-progress", "--out", trained,
                      *(["--epochs", str(epochs)] if epochs else [])])
        fused = ["--lightgcn", trained]
    steps.append([TRAINER, "--snapshot", snapshot, "--dataset", dataset, "--out", out, *ep, *fused, *extra])
    if publish:
        steps.append(["publish", "--checkpoint", out, "--dataset", dataset])
    return steps


def default_refit_steps(dataset: str, settings: Any, epochs: int | None = None) -> list[list[str]]:
    """The steps that fit and publish the default model of ``dataset`` (folders named by the time).

    Args:
        dataset: Dataset name.
        settings: :class:`graphrec.settings.Settings` (snapshot and model folders).
        epochs: Training epochs (default: the trainer's).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    snap = str(settings.snapshots_dir / f"refit-{dataset}-{stamp}")
    out = str(settings.models_dir / f"refit-{dataset}-{stamp}")
    return train_steps(dataset, snap, out, epochs=epochs)


__all__ = ["SPLIT_ARGS", "TRAINER", "default_refit_steps", "train_steps"]
