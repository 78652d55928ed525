"""``graphrec bench step``: the step profile of a recipe on tiny LightGCN-format files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.cli_runner import run_cli
from tests.unit.lightgcn_files import write_lightgcn_files


def test_bench_step_prints_and_writes_the_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        ["bench", "step", "--dataset", "tiny", "--path", str(data), "--recipe", "paper", "--device", "cpu",
         "--batch-size", "16", "--num-negatives", "2", "--positive-sampling", "user_distinct", "--steps", "4",
         "--warmup", "1", "--profiled-steps", "2", "--top", "5", "--trace", "--out", str(out)],
        capsys,
    )
    assert code == 0, stdout + err
    report = json.loads((out / "bench_step.json").read_text())
    # 20 users x 4 training pairs at batch 16
    assert report["steps_per_epoch"] == 5 and report["batch_size"] == 16
    assert report["config"]["num_negatives"] == 2 and report["overrides"]["positive_sampling"] == "user_distinct"
    assert len(report["step_ms"]) == 4 and len(report["sampling_seconds"]) == 3
    assert report["projected_epoch_seconds"] == pytest.approx(
        report["epoch_sampling_seconds"] + 5 * report["back_to_back_ms"] / 1000.0
    )
    assert [p["name"] for p in report["phases"]] == ["graphrec.forward", "graphrec.backward", "graphrec.optimizer"]
    assert 1 <= len(report["top_ops"]) <= 5
    trace = json.loads((out / "step_trace.json").read_text())
    assert any(e.get("name") == "graphrec.backward" for e in trace["traceEvents"])
    assert "projected epoch" in stdout and "graphrec.forward" in stdout


def test_bench_step_rejects_an_unknown_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(
        ["bench", "step", "--path", str(data), "--recipe", "fastest", "--device", "cpu", "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2 and "unknown recipe" in out + err
