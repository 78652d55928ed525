"""``graphrec train`` and ``graphrec evaluate`` end to end on a tiny snapshot (no Neo4j needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli.main import main
from graphrec.snapshot import write_snapshot
from gnn.checkpoint import load_checkpoint
from gnn.embeddings import export_embeddings


def _write_lightgcn_files(folder: Path) -> Path:
    """A tiny LightGCN-format dataset: each user line lists items."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for u in range(30):
        items = sorted({(u * 7 + j * 3) % 40 for j in range(8)} | {j for j in range(3)})
        train.append(" ".join(map(str, [u, *items[:-2]])))
        test.append(" ".join(map(str, [u, *items[-2:]])))
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test) + "\n")
    return folder


def _run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0)


def test_train_then_evaluate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _write_lightgcn_files(tmp_path / "lg")
    ckpt_dir = tmp_path / "ckpt"
    code = _run(
        ["train", "--lightgcn", str(files), "--dim", "8", "--layers", "2", "--epochs", "4", "--eval-every", "2",
         "--batch-size", "64", "--lr", "0.01", "--device", "cpu", "--no-progress", "--out", str(ckpt_dir)]
    )
    assert code == 0
    for name in ("model.pt", "meta.json", "config.json", "history.json", "curve.png"):
        assert (ckpt_dir / name).is_file()
    ckpt = load_checkpoint(ckpt_dir)
    assert ckpt.meta.val_metrics and ckpt.meta.test_metrics and ckpt.config is not None and ckpt.config.epochs == 4
    emb = export_embeddings(ckpt_dir)
    assert emb.user_vectors.shape == (30, 8)

    out = tmp_path / "eval.json"
    code = _run(["evaluate", "--lightgcn", str(files), "--checkpoint", str(ckpt_dir), "--baselines", "most_popular,item_knn",
                 "--ks", "5,10", "--device", "cpu", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {f"lightgcn:{ckpt.meta.version}", "most_popular", "item_knn"}
    assert all(0.0 <= r["recall@10"] <= 1.0 for r in results.values())
    assert "ndcg@10" in capsys.readouterr().out


def test_train_keeps_a_config_files_xavier_init_and_takes_init_overrides(tmp_path: Path) -> None:
    from gnn.config import paper_recipe

    files = _write_lightgcn_files(tmp_path / "lg")
    config = paper_recipe(embedding_dim=8, batch_size=64)
    config.init_std = None
    config_file = config.save(tmp_path / "xavier.json")
    common = ["--lightgcn", str(files), "--epochs", "1", "--device", "cpu", "--no-progress"]
    assert _run(["train", "--config", str(config_file), *common, "--out", str(tmp_path / "a")]) == 0
    kept = load_checkpoint(tmp_path / "a").config
    assert kept is not None and kept.init_std is None and kept.embedding_dim == 8
    assert _run(["train", "--config", str(config_file), "--init", "0.05", "--positive-sampling", "user_distinct",
                 *common, "--out", str(tmp_path / "b")]) == 0
    changed = load_checkpoint(tmp_path / "b").config
    assert changed is not None and changed.init_std == 0.05 and changed.positive_sampling == "user_distinct"
    assert _run(["train", "--init", "he", *common, "--out", str(tmp_path / "c")]) == 2


def test_train_needs_one_source(tmp_path: Path) -> None:
    assert _run(["train", "--device", "cpu"]) == 2
    snap_dir = write_snapshot(_snapshot(), tmp_path / "s")
    assert _run(["train", "--snapshot", str(snap_dir), "--lightgcn", str(tmp_path), "--device", "cpu"]) == 2


def _snapshot():  # type: ignore[no-untyped-def]
    import pandas as pd

    from graphrec.snapshot import SplitSpec, make_snapshot

    inter = pd.DataFrame({"user_idx": [0, 0, 1], "item_idx": [0, 1, 1], "split": ["train", "test", "train"]})
    return make_snapshot("t", "test", SplitSpec(name="fixed"), pd.DataFrame({"id": ["a", "b"]}), pd.DataFrame({"id": ["x", "y"]}), inter)


def test_train_resumes_from_its_state_to_the_same_checkpoint(tmp_path: Path) -> None:
    import torch

    files = _write_lightgcn_files(tmp_path / "lg")
    common = ["train", "--lightgcn", str(files), "--dim", "8", "--layers", "2", "--eval-every", "2", "--batch-size", "64",
              "--lr", "0.01", "--patience", "0", "--device", "cpu", "--no-progress"]
    assert _run([*common, "--epochs", "4", "--out", str(tmp_path / "whole")]) == 0
    # two epochs with a state, then two more from it (--epochs may grow on resume)
    assert _run([*common, "--epochs", "2", "--state", str(tmp_path / "state"), "--out", str(tmp_path / "first")]) == 0
    assert (tmp_path / "state" / "train_state.pt").is_file()
    assert _run([*common, "--epochs", "4", "--state", str(tmp_path / "state"), "--resume", "--out", str(tmp_path / "rest")]) == 0
    whole, rest = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "rest")
    assert rest.meta.best_epoch == whole.meta.best_epoch and rest.meta.val_metrics == whole.meta.val_metrics
    for a, b in zip(whole.model.state_dict().values(), rest.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [(s["first_epoch"], s["last_epoch"]) for s in rest.meta.extra["segments"]] == [(1, 2), (3, 4)]
    history = json.loads((tmp_path / "rest" / "history.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    # --resume without --state, or with another learning rate, is a usage error
    assert _run([*common, "--epochs", "6", "--resume", "--out", str(tmp_path / "x")]) == 2
    assert _run([*common, "--epochs", "6", "--lr", "0.02", "--state", str(tmp_path / "state"), "--resume",
                 "--out", str(tmp_path / "y")]) == 2
