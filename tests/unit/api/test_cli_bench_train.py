"""``graphrec bench train`` hyperparameter options (tiny LightGCN-format files, one epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.unit.cli_runner import run_cli
from tests.unit.lightgcn_files import write_lightgcn_files


def test_bench_train_overrides_reach_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    threads = torch.get_num_threads()
    try:
        code, out, err = run_cli(
            ["bench", "train", "--dataset", "tiny", "--path", str(data), "--recipe", "default", "--epochs", "1",
             "--eval-every", "1", "--device", "cpu", "--batch-size", "16", "--num-negatives", "3",
             "--similarity", "cosine", "--temperature", "0.15", "--reg", "0.001", "--lr", "0.002",
             "--positive-sampling", "user_distinct", "--init", "xavier", "--threads", "1", "--out", str(tmp_path / "out")],
            capsys,
        )
        assert code == 0, out + err
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    config = summary["config"]
    assert (config["similarity"], config["temperature"], config["reg"], config["lr"]) == ("cosine", 0.15, 0.001, 0.002)
    assert config["num_negatives"] == 3 and summary["torch_threads"] == 1
    assert config["positive_sampling"] == "user_distinct" and config["init_std"] is None
    assert summary["overrides"]["init"] == "xavier"
    assert summary["overrides"]["similarity"] == "cosine" and "epochs" not in summary["overrides"]
    assert 0.0 <= summary["history"][-1]["metrics"]["recall@20"] <= 1.0
    assert (tmp_path / "out" / "bench_train.png").is_file()


def test_bench_train_rejects_unknown_similarity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(
        ["bench", "train", "--path", str(data), "--epochs", "1", "--device", "cpu", "--similarity", "euclid",
         "--out", str(tmp_path / "out")],
        capsys,
    )
    assert code != 0 and "similarity" in (out + err)


def test_bench_train_resume_continues_a_time_limited_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    base = ["bench", "train", "--dataset", "tiny", "--path", str(data), "--epochs", "3", "--eval-every", "2",
            "--device", "cpu", "--batch-size", "16"]
    code, out, err = run_cli([*base, "--out", str(tmp_path / "whole")], capsys)
    assert code == 0, out + err
    # --time-limit 0 stops after the first epoch (evaluated, state saved); --resume runs epochs 2 and 3
    code, out, err = run_cli([*base, "--out", str(tmp_path / "cut"), "--time-limit", "0"], capsys)
    assert code == 0, out + err
    assert [h["epoch"] for h in json.loads((tmp_path / "cut" / "bench_train.json").read_text())["history"]] == [1]
    code, out, err = run_cli([*base, "--out", str(tmp_path / "cut"), "--resume"], capsys)
    assert code == 0, out + err
    assert "resuming after epoch 1" in out
    whole = json.loads((tmp_path / "whole" / "bench_train.json").read_text())
    cut = json.loads((tmp_path / "cut" / "bench_train.json").read_text())
    assert [h["loss"] for h in cut["history"]] == [h["loss"] for h in whole["history"]]
    assert cut["history"][-1]["metrics"] == whole["history"][-1]["metrics"]
    assert cut["history"][1]["metrics"] == whole["history"][1]["metrics"]
    assert cut["history"][0]["metrics"] is not None and whole["history"][0]["metrics"] is None
    assert [(s["first_epoch"], s["last_epoch"]) for s in cut["segments"]] == [(1, 1), (2, 3)]


def test_bench_train_resume_refuses_other_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    base = ["bench", "train", "--path", str(data), "--epochs", "2", "--device", "cpu", "--out", str(tmp_path / "out")]
    code, out, err = run_cli([*base, "--time-limit", "0"], capsys)
    assert code == 0, out + err
    code, out, err = run_cli([*base, "--resume", "--lr", "0.5"], capsys)
    assert code == 2 and "lr" in (out + err)
    code, out, err = run_cli([*base[:-1], str(tmp_path / "empty"), "--resume"], capsys)
    assert code != 0 and "cannot read the training state" in (out + err)
