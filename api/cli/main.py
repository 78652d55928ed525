"""Entry point of the ``graphrec`` command.

Each subcommand lives in its own module of this package and exposes ``register(app)``.
Domain errors become one line on stderr and the error's ``exit_code``; no stack traces
unless ``-vv`` is given.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

import click
import typer

from graphrec.errors import GraphrecError

# Subcommand modules, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "api.cli.neo4j_cmd",
    "api.cli.load_cmd",
    "api.cli.stats_cmd",
    "api.cli.snapshot_cmd",
    "api.cli.train_cmd",
    "api.cli.live_cmd",
    "api.cli.evaluate_cmd",
    "api.cli.encode_cmd",
    "api.cli.publish_cmd",
    "api.cli.refit_cmd",
    "api.cli.serve_cmd",
    "api.cli.recommend_cmd",
    "api.cli.demo_cmd",
    "api.cli.forget_cmd",
)

PLUGIN_GROUP = "graphrec.cli"
"""Entry-point group of command groups that live outside the product packages: each entry is a
``register(app)`` function. A source checkout registers ``benchmarks.cli:register`` (``graphrec bench``);
an installation without that package has no such command."""

_VERBOSITY = {"level": 0}


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _VERBOSITY["level"] = verbose


def build_app() -> typer.Typer:
    """Build the typer application with every available subcommand registered."""
    app = typer.Typer(
        name="graphrec",
        help="graphrec: a Neo4j + LightGCN + BERT recommender with explainable results.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @app.callback()
    def _root(
        verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug with tracebacks)."),
    ) -> None:
        _configure_logging(verbose)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # not written yet
                continue
            raise
        module.register(app)
    _register_plugins(app)
    return app


def _register_plugins(app: typer.Typer) -> None:
    """Let every installed :data:`PLUGIN_GROUP` entry point add its commands (a missing plugin package is skipped)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            register = ep.load()
        except ModuleNotFoundError as e:
            if e.name and ep.module.split(".")[0] == e.name.split(".")[0]:  # the plugin's package is not installed
                continue
            raise
        register(app)


# typer >= 0.22 vendors click (its own exception classes); older typer raises click's: catch both.
_ABORT = tuple({typer.Abort, click.exceptions.Abort})
_EXIT = tuple({typer.Exit, click.exceptions.Exit})
_USAGE = tuple({click.ClickException, getattr(typer, "TyperException", click.ClickException)})


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with a status mapped from the domain errors."""
    # torch warns about its own TorchScript use inside torch-geometric on import: nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)
    command = typer.main.get_command(build_app())
    try:
        rv = command.main(args=list(argv) if argv is not None else None, prog_name="graphrec", standalone_mode=False)
    except _ABORT:
        print("graphrec: aborted", file=sys.stderr)
        sys.exit(130)
    except _EXIT as e:
        sys.exit(e.exit_code)
    except _USAGE as e:  # a usage error (unknown command or option, bad value): its message, no traceback
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            print(f"graphrec: error: {e}", file=sys.stderr)
        sys.exit(int(getattr(e, "exit_code", 2)))
    except GraphrecError as e:
        if _VERBOSITY["level"] >= 2:
            logging.getLogger("graphrec").exception("failed")
        print(f"graphrec: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("graphrec: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
