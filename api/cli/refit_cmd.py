"""``graphrec refit``: fit the default model on the dataset's active graph and publish it (switches atomically).

A ``replace`` reload keeps the active model serving (its vectors are carried into the new generation);
the refit then trains on the new data. :func:`api.refit.default_refit_steps` is the one place that says what
"the default model" is; the admin reload job and ``graphrec load ... --mode replace`` both run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer

from api.refit import default_refit_steps
from graphrec.errors import ConfigError


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "api.cli.main", *args]


def run_refit(dataset: str, settings: Any, epochs: int | None = None) -> None:
    """Run :func:`api.refit.default_refit_steps` one after the other in subprocesses; stop at the first failure.

    Raises:
        ConfigError: A step failed (its exit status in the message).
    """
    for args in default_refit_steps(dataset, settings, epochs):
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
