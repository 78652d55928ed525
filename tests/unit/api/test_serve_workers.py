"""``graphrec serve --workers``: one worker runs the app object, several run the app factory by import string."""

from __future__ import annotations

from typing import Any

import pytest

from graphrec.settings import get_settings
from tests.unit.cli_runner import run_cli


@pytest.mark.parametrize("args,env,expect", [([], None, 1), (["--workers", "3"], None, 3), ([], "2", 2)])
def test_serve_starts_uvicorn_with_the_configured_workers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], env: str | None, expect: int
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr("api.main.create_app", lambda settings=None: "app-object")
    if env is not None:
        monkeypatch.setenv("GRAPHREC_API_WORKERS", env)
    get_settings.cache_clear()
    try:
        code, out, _ = run_cli(["serve", "--port", "8123", *args], capsys)
    finally:
        get_settings.cache_clear()
    assert code == 0 and f"{expect} worker(s)" in out
    (app, kw), = calls
    assert kw["port"] == 8123 and kw["host"] == "127.0.0.1"
    if expect == 1:
        assert app == "app-object" and "workers" not in kw
    else:
        assert app == "api.main:create_app" and kw["factory"] is True and kw["workers"] == expect
