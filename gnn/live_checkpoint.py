"""Checkpoints of live forms (:class:`gnn.live.LiveForm`): what ``graphrec publish`` writes into Neo4j.

A live checkpoint is a folder::

    <dir>/live.npz     neighbours (CSR data / indices / indptr), in / out factors, popularity, weights
    <dir>/meta.json    :class:`gnn.checkpoint.CheckpointMeta` with ``model_type = "live"``; ``extra`` says
                       which split parts the served form was fitted on (``served_on``), the chosen
                       settings, the text encoder, and the validation / test numbers of the
                       *evaluation* fits (kept apart from the served form, which saw every part)
    <dir>/item_ids.json  the item vocabulary (row i of every matrix is item_ids[i])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from gnn.checkpoint import CheckpointMeta, new_version
from gnn.live import LiveForm
from graphrec.clock import utc_now_iso
from graphrec.errors import ModelError

LIVE_MODEL_TYPE = "live"
LIVE_FILE = "live.npz"


@dataclass
class LiveCheckpoint:
    """A loaded live checkpoint."""

    form: LiveForm
    item_ids: list[str]
    meta: CheckpointMeta
    path: Path


def is_live_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a live checkpoint folder."""
    return (Path(path) / LIVE_FILE).is_file()


def live_checkpoint_dir(path: str | os.PathLike[str]) -> Path | None:
    """The live checkpoint folder ``path`` names (the folder itself or its ``live.npz``); ``None``: not one."""
    p = Path(path)
    if p.name == LIVE_FILE and is_live_checkpoint(p.parent):
        return p.parent
    return p if is_live_checkpoint(p) else None


def save_live_checkpoint(
    directory: str | os.PathLike[str],
    form: LiveForm,
    item_ids: list[str],
    *,
    dataset: str,
    snapshot_hash: str,
    version: str | None = None,
    val_metrics: dict[str, float] | None = None,
    test_metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a live checkpoint folder atomically.

    Raises:
        ModelError: The vocabulary does not match the form, or an OS error.
    """
    if len(item_ids) != form.num_items:
        raise ModelError(f"{len(item_ids)} item ids for a form of {form.num_items} items")
    meta = CheckpointMeta(
        model_type=LIVE_MODEL_TYPE, model_kwargs={}, dataset=dataset, snapshot_hash=snapshot_hash,
        version=version or new_version(LIVE_MODEL_TYPE), created_at=utc_now_iso(), val_metrics=val_metrics or {},
        test_metrics=test_metrics or {}, extra=extra or {},
    )
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    w = form.neighbours.tocsr()
    arrays: dict[str, np.ndarray] = {
        "w_data": w.data.astype(np.float32), "w_indices": w.indices.astype(np.int32), "w_indptr": w.indptr.astype(np.int64),
        "scalars": np.array([form.alpha, form.gamma], dtype=np.float64),
    }
    if form.in_factors is not None:
        arrays["in_factors"] = form.in_factors.astype(np.float32)
        arrays["out_factors"] = form.out_factors.astype(np.float32)  # type: ignore[union-attr]
    if form.popularity is not None:
        arrays["popularity"] = form.popularity.astype(np.float32)
    try:
        np.savez(tmp / LIVE_FILE, **arrays)
        (tmp / "item_ids.json").write_text(json.dumps([str(i) for i in item_ids]))
        (tmp / "meta.json").write_text(meta.model_dump_json(indent=2))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"cannot write live checkpoint to {target}: {e}") from e
    return target


def load_live_checkpoint(path: str | os.PathLike[str]) -> LiveCheckpoint:
    """Load a live checkpoint folder.

    Raises:
        ModelError: Missing or unreadable files.
    """
    p = Path(path)
    try:
        meta = CheckpointMeta.model_validate(json.loads((p / "meta.json").read_text()))
        item_ids = [str(i) for i in json.loads((p / "item_ids.json").read_text())]
        with np.load(p / LIVE_FILE) as z:
            n = len(item_ids)
            w = sp.csr_matrix((z["w_data"], z["w_indices"], z["w_indptr"]), shape=(n, n))
            alpha, gamma = (float(x) for x in z["scalars"])
            form = LiveForm(
                neighbours=w,
                in_factors=z["in_factors"] if "in_factors" in z else None,
                out_factors=z["out_factors"] if "out_factors" in z else None,
                alpha=alpha,
                popularity=z["popularity"] if "popularity" in z else None,
                gamma=gamma,
            )
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot read live checkpoint {p}: {e}") from e
    if meta.model_type != LIVE_MODEL_TYPE:
        raise ModelError(f"{p} is a {meta.model_type!r} checkpoint, not a live one")
    return LiveCheckpoint(form=form, item_ids=item_ids, meta=meta, path=p)


__all__ = ["LIVE_FILE", "LIVE_MODEL_TYPE", "LiveCheckpoint", "is_live_checkpoint", "live_checkpoint_dir", "load_live_checkpoint",
           "save_live_checkpoint"]
