"""Usage errors of the ``graphrec`` CLI end with click's message and status 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.unit.cli_runner import run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-command"], "No such command 'no-such-command'"),
        (["neo4j", "start", "--no-such-option"], "No such option: --no-such-option"),
        (["serve", "--workers", "many"], "Invalid value for '--workers'"),
    ],
)
def test_a_usage_error_prints_its_message_and_exits_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    assert "Usage: graphrec" in out
