"""``graphrec refit``: fit the default model on the dataset's active graph and publish it (switches atomically).

A ``replace`` reload keeps the active model serving (its vectors are carried into the new generation);
the refit then trains on the new data. :func:`default_refit_steps` is the one place that says what
"the default model" is; the admin reload job and ``graphrec load ... --mode replace`` both run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from graphrec.errors import ConfigError

Step = list[str] | Callable[[], list[str] | None]


def default_refit_steps(dataset: str, settings: Any, epochs: int | None = None) -> list[Step]:
    """The graphrec commands that fit and publish the default model of ``dataset``.

    Today: export a snapshot from the active graph (per-user temporal split, 10 % validation),
    train the fused model (``graphrec fuse``; ``graphrec train`` where fusion is not installed), publish
    the checkpoint (the publish refuses it if it does not cover the graph).

    Args:
        dataset: Dataset name.
        settings: :class:`graphrec.settings.Settings` (folders).
        epochs: Training epochs (default: the trainer's).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    snap = str(settings.snapshots_dir / f"refit-{dataset}-{stamp}")
    out = str(settings.models_dir / f"refit-{dataset}-{stamp}")
    ep = ["--epochs", str(epochs)] if epochs else []

    def trainer() -> list[str]:
        from api.cli.demo_cmd import _available

        command = "fuse" if _available("fuse") is not None else "train"
        return [command, "--snapshot", snap, "--dataset", dataset, "--out", out, *ep]

    return [
        ["snapshot", "export", "--dataset", dataset, "--split", "per_user_temporal", "--param", "test_fraction=0.2",
         "--param", "val_fraction=0.1", "--out", snap],
        trainer,
        ["publish", "--checkpoint", out, "--dataset", dataset],
    ]


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "api.cli.main", *args]


def run_refit(dataset: str, settings: Any, epochs: int | None = None) -> None:
    """Run :func:`default_refit_steps` one after the other in subprocesses; stop at the first failure.

    Raises:
        ConfigError: A step failed (its exit status in the message).
    """
    for step in default_refit_steps(dataset, settings, epochs):
        args = step() if callable(step) else step
        if args is None:
            continue
        typer.echo(f"$ graphrec {' '.join(args)}", err=True)
        rc = subprocess.run(_command(args), check=False, stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise ConfigError(f"refit step `graphrec {args[0]}` failed with exit status {rc}; the active model keeps serving")


def start_refit_detached(dataset: str, settings: Any, epochs: int | None = None) -> tuple[int, Path]:
    """Start ``graphrec refit`` in a detached process (survives the calling command); returns its pid and log file."""
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"refit-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    args = ["refit", "--dataset", dataset] + (["--epochs", str(epochs)] if epochs else [])
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.Popen(_command(args), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ))
    return proc.pid, log


def register(app: typer.Typer) -> None:
    """Add ``graphrec refit``."""

    @app.command("refit")
    def refit_cmd(
        dataset: str | None = typer.Option(None, "--dataset", help="Dataset (default: GRAPHREC_DATASET)."),
        epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the trainer's)."),
    ) -> None:
        """Fit the default model on the active graph and publish it (what a replace reload starts in the background)."""
        from graphrec.settings import get_settings

        settings = get_settings()
        run_refit(dataset or settings.dataset, settings, epochs)
        typer.echo(f"refit of {dataset or settings.dataset} published")
