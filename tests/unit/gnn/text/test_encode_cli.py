"""``graphrec encode --precision``: the option reaches the encoder and keys the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphrec.settings import get_settings
from tests.unit.cli_runner import run_cli



@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRAPHREC_HOME", str(tmp_path))
    monkeypatch.delenv("GRAPHREC_TEXT_PRECISION", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_precision_option_and_separate_caches(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["--text", "a space opera with robots", "--text", "a wedding comedy"]
    vecs = {}
    for precision in ("fp32", "int8"):
        out = home / f"{precision}.npz"
        code, stdout, err = run_cli(["encode", *texts, "--device", "cpu", "--precision", precision, "--out", str(out)], capsys)
        assert code == 0, err
        assert f"({precision})" in stdout and "2 encoded" in stdout
        vecs[precision] = np.load(out)["vectors"]
    caches = sorted(p.name for p in (home / "text-cache").glob("*.npz"))
    assert len(caches) == 2 and any(name.endswith("-int8.npz") for name in caches)
    cos = (vecs["fp32"] * vecs["int8"]).sum(1)
    assert cos.min() > 0.97
    # a second int8 run is served from the int8 cache only
    code, stdout, _ = run_cli(["encode", *texts, "--device", "cpu", "--precision", "int8"], capsys)
    assert code == 0 and "2 cache hits, 0 encoded" in stdout


def test_precision_from_the_environment(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHREC_TEXT_PRECISION", "fp32")
    get_settings.cache_clear()
    code, stdout, err = run_cli(["encode", "--text", "x", "--device", "cpu", "--no-cache"], capsys)
    assert code == 0, err
    assert "(fp32)" in stdout


def test_bad_precision_is_a_clean_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["encode", "--text", "x", "--device", "cpu", "--precision", "int4"], capsys)
    assert code != 0 and "precision" in err
    code, _, err = run_cli(["encode", "--text", "x", "--device", "cpu", "--precision", "fp16"], capsys)
    assert code != 0 and "CUDA" in err
