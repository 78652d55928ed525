"""``graphrec train``: train LightGCN (or BPR-MF / a registered plug-in) and save a checkpoint.

Data comes from exactly one of: the Neo4j graph (``--dataset NAME``: a fresh snapshot is
exported and saved), a snapshot folder (``--snapshot DIR``) or LightGCN-format files
(``--lightgcn DIR``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from api.cli import recipe_options as opts
from graphrec.errors import InvalidArgumentError

if TYPE_CHECKING:
    from graphrec.settings import Settings
    from graphrec.snapshot import Snapshot


def load_snapshot(
    settings: Settings,
    *,
    dataset: str | None,
    snapshot: Path | None,
    lightgcn: Path | None,
    split: str,
    params: dict[str, Any],
    seed: int,
) -> Snapshot:
    """Resolve the training data source into a :class:`Snapshot` (exactly one source must be given).

    Raises:
        InvalidArgumentError: None or several sources.
    """
    from graphrec.snapshot import SplitSpec, read_snapshot, write_snapshot

    given = [s for s in (dataset and not (snapshot or lightgcn), snapshot, lightgcn) if s]
    if len(given) != 1:
        raise InvalidArgumentError("give exactly one data source: --snapshot DIR, --lightgcn DIR or --dataset NAME (Neo4j)")
    if snapshot is not None:
        return read_snapshot(snapshot)
    spec = SplitSpec(name=split, params=params)
    if lightgcn is not None:
        from gnn.data import snapshot_from_frames
        from loaders.lightgcn import read_lightgcn

        frames = read_lightgcn(lightgcn, name=dataset or lightgcn.name)
        return snapshot_from_frames(frames, spec, seed=seed, source=f"lightgcn-files:{lightgcn}")
    from api.cli.common import open_graph
    from graph.export import export_snapshot

    if dataset is None:  # unreachable: checked above; keeps type checkers informed
        raise InvalidArgumentError("--dataset is required to export from Neo4j")
    with open_graph(settings) as driver:
        snap = export_snapshot(driver, dataset, spec, settings.neo4j_database, seed=seed)
    path = write_snapshot(snap, settings.snapshots_dir / f"{dataset}-{split}-{snap.manifest.hash[:12]}")
    typer.echo(f"snapshot exported from Neo4j to {path}")
    return snap


def _parse_params(values: list[str]) -> dict[str, object]:
    from api.cli.snapshot_cmd import parse_params

    return parse_params(values)


def train(
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name; alone: export a fresh snapshot from Neo4j."),
    snapshot: Path | None = typer.Option(None, "--snapshot", help="Train from this snapshot folder."),
    lightgcn: Path | None = typer.Option(None, "--lightgcn", help="Train from LightGCN-format files (train.txt / test.txt)."),
    split: str = typer.Option("fixed", "--split", help="Split for Neo4j / LightGCN sources: fixed, per_user_random, per_user_temporal, leave_one_out."),
    param: list[str] = typer.Option([], "--param", help="Split parameter key=value (repeatable); default val_fraction=0.1."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the split."),
    recipe: str = typer.Option("paper", "--recipe", help="paper or default (see docs/training.md)."),
    config_file: Path | None = typer.Option(None, "--config", help="TrainConfig JSON (overrides the recipe; options override it)."),
    model: str | None = typer.Option(
        None, "--model",
        help="lightgcn, mf, a registered plug-in model, or a closed-form graph filter: gfcf, chebycf, ease, auto (chosen on validation).",
    ),
    filter_param: list[str] = opts.FILTER_PARAM,
    neighbours_top_k: int | None = opts.NEIGHBOURS_TOP_K,
    budget: float = opts.SELECT_BUDGET,
    refit_all: bool = typer.Option(
        False, "--refit-all/--no-refit-all",
        help="Graph filters: after evaluating, refit the settings on every part (train + val + test) and save that model for serving.",
    ),
    dim: int | None = typer.Option(None, "--dim", help="Embedding dimension."),
    layers: int | None = typer.Option(None, "--layers", help="LightGCN layers."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate."),
    reg: float | None = typer.Option(None, "--reg", help="L2 weight on ego embeddings."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Positives per step."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs."),
    negatives: int | None = typer.Option(None, "--negatives", help="Negatives per positive."),
    loss: str | None = typer.Option(None, "--loss", help="bpr or softmax."),
    temperature: float | None = typer.Option(None, "--temperature", help="Softmax temperature."),
    similarity: str | None = typer.Option(None, "--similarity", help="dot or cosine (L2-normalised final embeddings)."),
    shared_negatives: bool | None = typer.Option(
        None, "--shared-negatives/--per-positive-negatives", help="Negatives drawn per step and shared by the batch, or per positive."
    ),
    positive_sampling: str | None = typer.Option(
        None, "--positive-sampling",
        help="interaction (every training pair once per epoch), user (users drawn uniformly, as LightGCN's PyTorch code) "
        "or user_distinct (batches of distinct users, as LightGCN's TensorFlow code).",
    ),
    init: str | None = typer.Option(None, "--init", help="Layer-0 init: a normal std (0.1) or xavier (LightGCN's TensorFlow code)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch.set_num_threads(N) before training."),
    retain_memory: bool = opts.RETAIN_MEMORY,
    eval_every: int | None = typer.Option(None, "--eval-every", help="Validate every N epochs."),
    patience: int | None = typer.Option(None, "--patience", help="Evaluations without improvement before stopping (0: never)."),
    seed: int | None = typer.Option(None, "--seed", help="Training seed."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda (default: GRAPHREC_DEVICE)."),
    out: Path | None = typer.Option(None, "--out", help="Checkpoint folder (default: GRAPHREC_HOME/models/<dataset>/<version>)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    state: Path | None = typer.Option(
        None, "--state", help="Save a resumable training state here (file or folder) at every validation and when training stops.",
    ),
    resume: bool = typer.Option(
        False, "--resume/--no-resume",
        help="Continue from the --state file (same data and options; --epochs, --eval-every, --patience and --device may change).",
    ),
) -> None:
    """Train a model on a snapshot and save a checkpoint, its training curve and its metrics."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if retain_memory:
        from gnn.host_memory import retain_freed_memory

        retain_freed_memory()
    from gnn.checkpoint import new_version, save_checkpoint
    from gnn.config import RECIPES, TrainConfig, parse_init_std
    from gnn.data import InteractionData
    from gnn.evaluate import Evaluator
    from gnn.plots import plot_curves
    from gnn.train import create_model, train_model
    from gnn.train_state import load_train_state
    from graphrec.settings import get_settings

    settings = get_settings()
    if recipe not in RECIPES:
        raise InvalidArgumentError(f"unknown recipe {recipe!r}; use one of {sorted(RECIPES)}")
    if resume and state is None:
        raise InvalidArgumentError("--resume needs --state (the file or folder of the state to continue from)")
    params = _parse_params(param)
    if split == "fixed":
        params.setdefault("val_fraction", 0.1)
    snap = load_snapshot(settings, dataset=dataset, snapshot=snapshot, lightgcn=lightgcn, split=split, params=params, seed=split_seed)
    from gnn.filters.bench import FILTER_MODELS

    if model in FILTER_MODELS:
        _train_filter(
            InteractionData.from_snapshot(snap), model, filter_param=filter_param, neighbours_top_k=neighbours_top_k,
            budget=budget, refit_all=refit_all, device=device or settings.device, seed=seed if seed is not None else 0,
            out=out, models_dir=settings.models_dir,
        )
        return
    base = TrainConfig.load(config_file) if config_file else RECIPES[recipe]()
    config = base.with_options(
        model=model, embedding_dim=dim, num_layers=layers, lr=lr, reg=reg, batch_size=batch_size, epochs=epochs,
        num_negatives=negatives, loss=loss, temperature=temperature, similarity=similarity, shared_negatives=shared_negatives,
        positive_sampling=positive_sampling, eval_every=eval_every, patience=patience,
        seed=seed, device=device or settings.device,
    )
    if init is not None:
        config.init_std = parse_init_std(init)
    data = InteractionData.from_snapshot(snap)
    if len(data.val) == 0:
        from gnn.holdout import DEFAULT_VAL_FRACTION, carve_validation

        data = carve_validation(data, DEFAULT_VAL_FRACTION, seed=split_seed)  # the carve of `graphrec fit` (seed 0 by default)
        typer.echo(f"no validation part: carved {len(data.val)} training interactions ({DEFAULT_VAL_FRACTION:.0%} per user) for early stopping")
    typer.echo(
        f"{data.dataset}: {data.num_users} users, {data.num_items} items; train {len(data.train)}, "
        f"val {len(data.val)}, test {len(data.test)}; model {config.model}, device {config.device}"
    )
    net = create_model(config, data)
    previous = load_train_state(state) if resume and state is not None else None
    if previous is not None:
        typer.echo(f"resuming after epoch {previous.epoch} from {state}")
    result = train_model(net, data, config, progress=progress, state_path=state, resume=previous)
    test_metrics: dict[str, float] = {}
    if len(data.test):
        ev = Evaluator(data, "test", ks=sorted({*config.ks, 10, 20}), batch_users=config.eval_batch_users, device=config.device)
        test_metrics = ev.evaluate(net).metrics
    version = new_version(config.model)
    target = out or settings.models_dir / data.dataset / version
    history = result.to_json()
    path = save_checkpoint(
        target, net, users=data.users, items=data.items, dataset=data.dataset, snapshot_hash=data.snapshot_hash,
        version=version, config=config, val_metrics=result.best_metrics, test_metrics=test_metrics,
        best_epoch=result.best_epoch, extra={"stopped_early": result.stopped_early, "epochs_run": len(result.history), "segments": result.segments},
    )
    (path / "history.json").write_text(json.dumps(history, indent=2))
    plot_curves(path / "curve.png", history["history"], metrics=[config.monitor], title=f"{config.model} on {data.dataset}")
    typer.echo(f"checkpoint written to {path}")
    typer.echo(json.dumps({"version": version, "best_epoch": result.best_epoch, "val": result.best_metrics, "test": test_metrics}, indent=2))


def _train_filter(
    data: Any, model: str, *, filter_param: list[str], neighbours_top_k: int | None, budget: float, refit_all: bool,
    device: str, seed: int, out: Path | None, models_dir: Path,
) -> None:
    """Fit a graph filter (``auto``: chosen on validation, then refitted on train + val), evaluate it, save it.

    The checkpoint's ``val_metrics`` / ``test_metrics`` describe the evaluated model; ``extra.fitted_on``
    names the parts the saved model saw (all of them with ``--refit-all``: the served model).
    """
    from gnn.checkpoint import new_version, save_checkpoint
    from gnn.evaluate import Evaluator
    from gnn.filters.config import filter_config
    from gnn.filters.selection import SelectionConfig, auto_fit, checkpoint_extra, fit_filter, fit_for_serving

    overrides = opts.parse_filter_params(filter_param)
    if neighbours_top_k is not None:
        overrides["neighbours_top_k"] = neighbours_top_k
    selection = None
    if model == "auto":
        cfg = SelectionConfig(time_budget_s=budget, seed=seed, **{k: overrides[k] for k in ("neighbours_top_k", "correction_rank") if k in overrides})
        fitted = auto_fit(data, cfg, device)
        net, selection, eval_data, config = fitted.model, fitted.selection, fitted.data, fitted.selection.config
        typer.echo(f"selected {config.model_dump()} on validation: {selection.val_metrics} ({selection.seconds:.1f} s)")
    else:
        config = filter_config(model, **overrides)
        eval_data = data
        net = fit_filter(config, data, ("train",), device)
    val_metrics = selection.val_metrics if selection else {}
    if selection is None and len(eval_data.val):
        val_metrics = Evaluator(eval_data, "val", ks=[10, 20], device=device).evaluate(net).metrics
    test_metrics = Evaluator(eval_data, "test", ks=[10, 20], device=device).evaluate(net).metrics if len(eval_data.test) else {}
    evaluated_on = list(net.fitted_parts)
    if refit_all:
        net = fit_for_serving(eval_data, config, device)
        typer.echo(f"refitted on {list(net.fitted_parts)} for serving")
    version = new_version(config.model)
    target = out or models_dir / data.dataset / version
    extra = checkpoint_extra(net, config, selection, evaluated_model_fitted_on=evaluated_on)
    path = save_checkpoint(
        target, net, users=data.users, items=data.items, dataset=data.dataset, snapshot_hash=data.snapshot_hash,
        version=version, val_metrics=val_metrics, test_metrics=test_metrics, extra=extra,
    )
    typer.echo(f"checkpoint written to {path}")
    typer.echo(json.dumps({"version": version, "fitted_on": extra["fitted_on"], "val": val_metrics, "test": test_metrics}, indent=2))


def register(app: typer.Typer) -> None:
    """Add ``graphrec train`` to the app."""
    app.command("train")(train)
