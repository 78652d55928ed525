"""Command groups outside the product packages come in through the ``graphrec.cli`` entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import typer

from api.cli import main as cli_main
from tests.unit.cli_runner import run_cli


def test_bench_is_a_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert "api.cli.bench_cmd" not in cli_main.COMMAND_MODULES
    code, out, _ = run_cli(["bench", "--help"], capsys)
    assert code == 0
    for command in ("load", "fusion", "serve"):
        assert command in out


def test_a_plugin_whose_package_is_missing_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = EntryPoint(name="gone", value="graphrec_no_such_plugin.cli:register", group=cli_main.PLUGIN_GROUP)
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: [missing] if group == cli_main.PLUGIN_GROUP else [])
    app = typer.Typer()
    cli_main._register_plugins(app)
    assert app.registered_groups == [] and app.registered_commands == []
