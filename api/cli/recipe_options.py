"""Options shared by the training commands, the recipe they build, and the benchmarks' data.

The option constants are typer defaults for the signatures of ``graphrec bench train`` and
``graphrec bench step`` (one help text per option; ``graphrec train`` shares ``RETAIN_MEMORY``);
:func:`recipe_config` turns the recipe plus the options given into a :class:`gnn.config.TrainConfig`,
and :func:`load_fixed_split` reads LightGCN-format files keeping their own train / test split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from gnn.config import TrainConfig
    from gnn.data import InteractionData

DATASET = typer.Option("gowalla", help="Dataset name (LightGCN-format files).")
PATH = typer.Option(..., help="Folder with train.txt / test.txt (LightGCN format; no default: name your copy of the data).")
RECIPE = typer.Option(
    "paper", help="paper (dim 64, 3 layers, lr 1e-3, L2 1e-4, batch 2048, 1 negative, BPR, user-uniform positives) or default."
)
BATCH_SIZE = typer.Option(None, help="Override the recipe's batch size.")
NUM_NEGATIVES = typer.Option(None, help="Override negatives per positive.")
LOSS = typer.Option(None, help="Override the loss (bpr / softmax).")
LR = typer.Option(None, help="Override the learning rate.")
REG = typer.Option(None, help="Override the L2 weight on ego embeddings.")
TEMPERATURE = typer.Option(None, help="Override the sampled-softmax temperature.")
SIMILARITY = typer.Option(None, help="Override the score: dot or cosine (L2-normalised final embeddings).")
SHARED_NEGATIVES = typer.Option(
    None, "--shared-negatives/--per-positive-negatives",
    help="Override: draw --num-negatives items per step, shared by the whole batch (or per positive).",
)
POSITIVE_SAMPLING = typer.Option(
    None, help="Override: interaction (every training pair once per epoch), user (users drawn uniformly, as LightGCN's "
    "PyTorch code) or user_distinct (batches of distinct users, as LightGCN's TensorFlow code).",
)
INIT = typer.Option(None, help="Override the layer-0 init: a normal std (0.1) or xavier (LightGCN's TensorFlow code).")
THREADS = typer.Option(None, min=1, help="torch.set_num_threads(N) before training (default: torch's choice).")
DEVICE = typer.Option("auto", help="auto / cpu / cuda.")
SEED = typer.Option(2020, help="Seed.")
RETAIN_MEMORY = typer.Option(
    True, "--retain-memory/--no-retain-memory",
    help="Keep freed host memory in the process (glibc mallopt) so per-step temporaries stop page-faulting "
    "(gnn.host_memory; same results, ~25% faster CPU steps on Gowalla).",
)

MODEL = typer.Option(
    "lightgcn", "--model",
    help="lightgcn (the recipe), or a closed-form graph filter: gfcf, chebycf, ease, or auto (chosen on a validation part).",
)
FILTER_PARAM = typer.Option([], "--filter-param", help="A graph filter setting key=value (repeatable), e.g. alpha=0.3.")
NEIGHBOURS_TOP_K = typer.Option(None, "--neighbours-top-k", min=1, help="Graph filters: item-item weights kept per item (default 100).")
SELECT_ON = typer.Option(
    "val", "--select-on",
    help="auto: choose settings on a validation part carved from train (val), or on the test part (test: the literature's protocol).",
)
SELECT_BUDGET = typer.Option(600.0, "--budget", help="auto: time budget of the search in seconds.")
MAX_VAL_USERS = typer.Option(8192, "--max-val-users", help="auto: validation users scored per candidate (a seeded sample).")

#: Options that run the recipe rather than change it (left out of the "tuned" list in titles).
RUN_OPTIONS: frozenset[str] = frozenset({"epochs", "eval_every", "device", "seed"})


def recipe_config(recipe: str, options: dict[str, Any], init: str | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The named recipe with the options given applied (``None`` = not given).

    Args:
        recipe: A key of :data:`gnn.config.RECIPES`.
        options: ``TrainConfig`` fields from the command line.
        init: ``--init`` (a normal std or ``xavier``), when given.

    Returns:
        The config, and the options that change the recipe (for titles and reports).

    Raises:
        InvalidArgumentError: Unknown recipe or init.
    """
    from graphrec.errors import InvalidArgumentError
    from gnn.config import RECIPES, parse_init_std

    if recipe not in RECIPES:
        raise InvalidArgumentError(f"unknown recipe {recipe!r}; use one of {sorted(RECIPES)}")
    given = {k: v for k, v in options.items() if v is not None}
    config = RECIPES[recipe](**given)
    tuned = {k: v for k, v in given.items() if k not in RUN_OPTIONS}
    if init is not None:
        config.init_std = parse_init_std(init)
        tuned["init"] = init
    return config, tuned


def load_fixed_split(path: Path, dataset: str, seed: int) -> tuple[InteractionData, float]:
    """LightGCN-format ``train.txt`` / ``test.txt`` as interactions with their own split (no validation part).

    Returns:
        The interactions and the seconds reading and snapshotting took.
    """
    from graphrec.snapshot import SplitSpec
    from gnn.data import InteractionData, snapshot_from_frames
    from loaders.lightgcn import read_lightgcn

    t0 = time.perf_counter()
    frames = read_lightgcn(path, name=dataset)
    snap = snapshot_from_frames(frames, SplitSpec(name="fixed", params={"val_fraction": 0.0}), seed=seed)
    return InteractionData.from_snapshot(snap), time.perf_counter() - t0


def parse_filter_params(values: list[str]) -> dict[str, Any]:
    """``key=value`` strings as settings (ints, floats, ``none`` -> None, else strings)."""
    from graphrec.errors import InvalidArgumentError

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"filter setting {item!r} is not key=value")
        val: Any = raw
        if raw.lower() == "none":
            val = None
        else:
            for cast in (int, float):
                try:
                    val = cast(raw)
                    break
                except ValueError:
                    pass
        out[key.strip()] = val
    return out


def run_filter_bench_command(
    *, dataset: str, path: Path, model: str, filter_param: list[str], neighbours_top_k: int | None,
    select_on: str, budget: float, max_val_users: int, device: str, seed: int, out: Path,
) -> None:
    """``bench train --model <graph filter>``: fit, evaluate, print and write ``bench_train.json``."""
    import json

    from gnn.filters.bench import run_filter_bench
    from gnn.filters.selection import SelectionConfig

    overrides = parse_filter_params(filter_param)
    if neighbours_top_k is not None:
        overrides["neighbours_top_k"] = neighbours_top_k
    selection = SelectionConfig(time_budget_s=budget, max_val_users=max_val_users, seed=seed,
                                **{k: overrides[k] for k in ("neighbours_top_k", "correction_rank") if k in overrides})
    data, load_s = load_fixed_split(path, dataset, seed)
    typer.echo(f"{dataset}: {data.num_users} users, {data.num_items} items, train {len(data.train)}, test {len(data.test)} (read {load_s:.1f} s)")
    record = run_filter_bench(data, model, overrides=overrides, selection=selection, select_on=select_on, device=device, echo=typer.echo)
    record = {"dataset": dataset, "path": str(path), "read_seconds": round(load_s, 2), **record}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_train.json").write_text(json.dumps(record, indent=2))
    typer.echo(json.dumps({k: v for k, v in record.items() if k not in ("selection", "config")}, indent=2))
    typer.echo(f"wrote {out / 'bench_train.json'}")
