"""``graphrec bench ...``: the benchmark command group, a plugin of the ``graphrec`` command.

``pyproject.toml`` registers :func:`register` in the entry point group ``graphrec.cli``; the product CLI
(:mod:`api.cli.main`) loads that group, so it never imports ``benchmarks`` by name. Each topic module
(``benchmarks/<topic>.py``, or a ``bench_<topic>`` module of ``api.cli`` not moved here yet) adds its
commands with ``register_bench(bench_app)``.
"""

from __future__ import annotations

import importlib
import logging

import typer

log = logging.getLogger(__name__)

#: Topic modules that contribute ``bench`` commands, in --help order.
BENCH_MODULES: tuple[str, ...] = (
    "benchmarks.load",
    "benchmarks.train",
    "benchmarks.step",
    "benchmarks.fusion",
    "benchmarks.serve",
    "benchmarks.feedback",
    "benchmarks.live",
    "benchmarks.fit",
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
