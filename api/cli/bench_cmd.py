"""``graphrec bench ...``: benchmarks, i.e. commands that print numbers (never timed assertions).

This module creates the shared ``bench`` sub-app; each topic module ``api/cli/bench_<topic>.py``
(load, train, step, fusion, serve, feedback), when present, adds its commands with ``register_bench(bench_app)``.
"""

from __future__ import annotations

import importlib
import logging

import typer

log = logging.getLogger(__name__)

#: Topic modules that contribute ``bench`` commands, in --help order.
BENCH_MODULES: tuple[str, ...] = (
    "api.cli.bench_load",
    "api.cli.bench_train",
    "api.cli.bench_step",
    "api.cli.bench_fusion",
    "api.cli.bench_serve",
    "api.cli.bench_feedback",
)


def build_bench_app(modules: tuple[str, ...] = BENCH_MODULES) -> typer.Typer:
    """Create the ``bench`` sub-app and let every present topic module register its commands."""
    bench_app = typer.Typer(name="bench", help="Benchmarks: commands that print numbers.", no_args_is_help=True)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that topic has no benchmarks (yet)
                continue
            raise
        register_bench = getattr(module, "register_bench", None)
        if register_bench is None:
            log.warning("%s has no register_bench(bench_app); its benchmarks are not available", name)
            continue
        register_bench(bench_app)
    return bench_app


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group to the ``graphrec`` app."""
    app.add_typer(build_bench_app(), name="bench")
