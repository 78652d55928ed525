"""api.refit: the one definition of the default model's train-and-publish steps."""

from __future__ import annotations

from pathlib import Path

from api.refit import EPOCH_TRAINERS, TRAINER, default_refit_steps, train_steps
from graphrec.settings import Settings


def test_train_steps_export_train_publish() -> None:
    steps = train_steps("movielens", "/s", "/m", epochs=5, extra=["--dim", "32"])
    assert [s[0] for s in steps] == ["snapshot", TRAINER, "publish"]
    assert steps[0][-2:] == ["--out", "/s"] and "val_fraction=0.1" in steps[0]
    epochs = ["--epochs", "5"] if TRAINER in EPOCH_TRAINERS else []  # a closed-form trainer takes no epochs
    assert steps[1] == [TRAINER, "--snapshot", "/s", "--dataset", "movielens", "--out", "/m", *epochs, "--dim", "32"]
    assert steps[2] == ["publish", "--checkpoint", "/m", "--dataset", "movielens"]
    assert [s[0] for s in train_steps("movielens", "/s", "/m", publish=False)] == ["snapshot", TRAINER]


def test_refit_steps_name_their_folders_under_home(tmp_path: Path) -> None:
    steps = default_refit_steps("toy", Settings(home=tmp_path))
    snap, out = steps[0][-1], steps[-1][2]
    assert snap.startswith(str(tmp_path / "snapshots" / "refit-toy-")) and out.startswith(str(tmp_path / "models" / "refit-toy-"))
    assert steps[1][steps[1].index("--snapshot") + 1] == snap and "--epochs" not in steps[1]


def test_train_steps_with_lightgcn_train_it_on_the_snapshot_and_hand_it_to_the_fit() -> None:
    steps = train_steps("movielens", "/s", "/m", epochs=50, lightgcn=True)
    assert [s[0] for s in steps] == ["snapshot", "train", TRAINER, "publish"]
    train, fit = steps[1], steps[2]
    assert train[train.index("--snapshot") + 1] == "/s" and train[train.index("--epochs") + 1] == "50"
    assert fit[fit.index("--lightgcn") + 1] == train[train.index("--out") + 1] == "/m-lightgcn"
    assert "--lightgcn" not in train_steps("movielens", "/s", "/m")[1]
