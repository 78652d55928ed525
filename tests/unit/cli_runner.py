"""Run the ``graphrec`` CLI in-process from unit tests."""

from __future__ import annotations

import pytest

from api.cli.main import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``graphrec ARGS`` in-process; return (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err
