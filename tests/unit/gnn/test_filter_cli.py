"""``graphrec bench train --model <graph filter>`` and ``graphrec train --model <graph filter>`` on tiny LightGCN files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gnn.checkpoint import load_checkpoint
from tests.unit.cli_runner import run_cli
from tests.unit.lightgcn_files import write_lightgcn_files


@pytest.mark.parametrize("model", ["gfcf", "chebycf", "ease"])
def test_bench_train_fits_and_evaluates_a_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(
        ["bench", "train", "--dataset", "tiny", "--path", str(data), "--model", model, "--device", "cpu",
         "--neighbours-top-k", "5", "--filter-param", "batch_users=7", "--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, out + err
    rec = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    assert rec["model"] == model and rec["protocol"].startswith("fixed") and rec["fitted_on"] == ["train"]
    assert 0.0 <= rec["best"]["recall@20"] <= 1.0 and 0.0 <= rec["best"]["ndcg@20"] <= 1.0
    assert rec["best"]["ndcg@20"] == rec["full"]["ndcg@20"]
    assert rec["fit_seconds"] >= 0 and rec["eval_seconds"] >= 0 and rec["neighbours_seconds"] >= 0
    assert rec["config"]["neighbours_top_k"] == 5 and rec["config"]["batch_users"] == 7
    assert 0.0 <= rec["truncated"]["recall@20"] <= 1.0


def test_bench_train_auto_selects_on_a_carved_validation_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(
        ["bench", "train", "--dataset", "tiny", "--path", str(data), "--model", "auto", "--device", "cpu",
         "--budget", "60", "--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, out + err
    rec = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    assert rec["validation_carved"] is True and rec["fitted_on"] == ["train", "val"]
    assert rec["protocol"].startswith("validation")
    sel = rec["selection"]
    assert sel["config"]["model"] in ("gfcf", "chebycf", "ease") and sel["candidates"]
    assert sel["val_metrics"]["ndcg@20"] == max(c["ndcg@20"] for c in sel["candidates"])


def test_bench_train_rejects_an_unknown_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(["bench", "train", "--path", str(data), "--model", "nope", "--out", str(tmp_path / "o")], capsys)
    assert code != 0 and "nope" in (out + err)


@pytest.mark.parametrize("model,refit,parts", [("gfcf", False, ["train"]), ("auto", True, ["train", "val", "test"])])
def test_train_saves_a_reloadable_filter_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, refit: bool, parts: list[str]
) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    args = ["train", "--lightgcn", str(data), "--split", "fixed", "--model", model, "--device", "cpu", "--budget", "60",
            "--out", str(tmp_path / "ckpt")]
    code, out, err = run_cli([*args, "--refit-all"] if refit else args, capsys)
    assert code == 0, out + err
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.meta.extra["fitted_on"] == parts
    assert ckpt.meta.test_metrics and "ndcg@20" in ckpt.meta.test_metrics
    assert ckpt.meta.extra["evaluated_model_fitted_on"] == ["train"] if model == "gfcf" else ["train", "val"]
    if model == "auto":
        assert ckpt.meta.extra["selection"]["val_metrics"] == ckpt.meta.val_metrics
    assert len(ckpt.model.train_users) == sum(1 for _ in ckpt.model.train_users)  # interactions restored
    scores = ckpt.model.scorer()(torch.arange(ckpt.model.num_users))
    assert scores.shape == (20, ckpt.model.num_items) and torch.isfinite(scores).all()


def test_bench_train_labels_the_literature_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(
        ["bench", "train", "--dataset", "tiny", "--path", str(data), "--model", "auto", "--select-on", "test",
         "--device", "cpu", "--budget", "60", "--out", str(tmp_path / "out")],
        capsys,
    )
    assert code == 0, out + err
    rec = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    assert rec["protocol"].startswith("test-selection") and rec["fitted_on"] == ["train"]
    # selected on the test part: the chosen candidate's score is the best test score of the search
    assert rec["selection"]["val_metrics"]["ndcg@20"] == max(c["ndcg@20"] for c in rec["selection"]["candidates"])


def test_bench_fit_fuses_a_lightgcn_trained_by_graphrec_train_on_the_same_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_lightgcn_files(tmp_path / "tiny")
    code, out, err = run_cli(["train", "--lightgcn", str(data), "--model", "lightgcn", "--recipe", "default", "--epochs", "2",
                              "--device", "cpu", "--no-progress", "--out", str(tmp_path / "lgcn")], capsys)
    assert code == 0, out + err
    code, out, err = run_cli(["bench", "fit", "--dataset", "tiny", "--path", str(data), "--no-text", "--select-budget", "20",
                              "--lightgcn", str(tmp_path / "lgcn"), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, out + err
    rec = json.loads((tmp_path / "out" / "bench_fit.json").read_text())
    assert rec["lightgcn"]["version"] == load_checkpoint(tmp_path / "lgcn").meta.version  # same training part: accepted
    assert {t["lam"] for t in rec["fusion_grid_val"]} >= {0.0, 0.1, 0.3, 1.0, 3.0} and "lam" in rec["fusion"]
    assert 0.0 <= rec["best"]["ndcg@20"] <= 1.0
