"""``graphrec bench train``: LightGCN training speed and accuracy on the LightGCN Gowalla split.

Prints per-epoch time, evaluation time and Recall@20 / NDCG@20 over epochs, and writes them as
JSON plus a PNG curve. Evaluation is on the data's own test part (as in the paper, no validation
carve-out); training never sees it. The training state is saved in the output folder at every
evaluation and when the run stops, so ``--resume`` continues a run (e.g. one cut by ``--time-limit``)
exactly where it stopped, and the JSON and PNG cover the whole run.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import typer


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``bench train`` to the shared ``bench`` sub-app."""

    @bench_app.command("train")
    def bench_train(
        dataset: str = typer.Option("gowalla", help="Dataset name (LightGCN-format files)."),
        path: Path = typer.Option(Path("/work/shared/datasets/gowalla"), help="Folder with train.txt / test.txt."),
        recipe: str = typer.Option("paper", help="paper (dim 64, 3 layers, lr 1e-3, L2 1e-4, batch 2048, 1 negative, BPR, user-uniform positives) or default."),
        epochs: int = typer.Option(20, help="Epochs to run."),
        eval_every: int = typer.Option(20, help="Evaluate the test part every N epochs (and after the last)."),
        batch_size: int | None = typer.Option(None, help="Override the recipe's batch size."),
        num_negatives: int | None = typer.Option(None, help="Override negatives per positive."),
        loss: str | None = typer.Option(None, help="Override the loss (bpr / softmax)."),
        lr: float | None = typer.Option(None, help="Override the learning rate."),
        reg: float | None = typer.Option(None, help="Override the L2 weight on ego embeddings."),
        temperature: float | None = typer.Option(None, help="Override the sampled-softmax temperature."),
        similarity: str | None = typer.Option(None, help="Override the score: dot or cosine (L2-normalised final embeddings)."),
        shared_negatives: bool | None = typer.Option(
            None, "--shared-negatives/--per-positive-negatives",
            help="Override: draw --num-negatives items per step, shared by the whole batch (or per positive).",
        ),
        positive_sampling: str | None = typer.Option(
            None, help="Override: interaction (every training pair once per epoch), user (users drawn uniformly, as LightGCN's "
            "PyTorch code) or user_distinct (batches of distinct users, as LightGCN's TensorFlow code).",
        ),
        init: str | None = typer.Option(None, help="Override the layer-0 init: a normal std (0.1) or xavier (LightGCN's TensorFlow code)."),
        threads: int | None = typer.Option(None, min=1, help="torch.set_num_threads(N) before training (default: torch's choice)."),
        device: str = typer.Option("auto", help="auto / cpu / cuda."),
        seed: int = typer.Option(2020, help="Seed."),
        time_limit: float | None = typer.Option(None, help="Stop after this many seconds (after the running epoch)."),
        out: Path = typer.Option(Path("bench-train"), help="Output folder for the JSON, the PNG and the training state."),
        resume: bool = typer.Option(
            False, "--resume/--no-resume",
            help="Continue from the training state in --out (give the same options; --epochs, --eval-every and --device may change).",
        ),
    ) -> None:
        """Run a training recipe on LightGCN-format data; print epoch / eval times and accuracy."""
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        from graphrec.errors import InvalidArgumentError
        from graphrec.snapshot import SplitSpec
        from gnn.config import RECIPES, parse_init_std
        from gnn.data import InteractionData, snapshot_from_frames
        from gnn.evaluate import Evaluator, resolve_device
        from gnn.plots import plot_curves
        from gnn.train import EpochRecord, create_model, train_model
        from gnn.train_state import load_train_state
        from loaders.lightgcn import read_lightgcn

        if recipe not in RECIPES:
            raise InvalidArgumentError(f"unknown recipe {recipe!r}; use one of {sorted(RECIPES)}")
        overrides: dict[str, Any] = dict(
            epochs=epochs, eval_every=eval_every, device=device, seed=seed,
            batch_size=batch_size, num_negatives=num_negatives, loss=loss, lr=lr, reg=reg,
            temperature=temperature, similarity=similarity, shared_negatives=shared_negatives,
            positive_sampling=positive_sampling,
        )
        config = RECIPES[recipe](**{k: v for k, v in overrides.items() if v is not None})
        tuned = {k: v for k, v in overrides.items() if v is not None and k not in ("epochs", "eval_every", "device", "seed")}
        if init is not None:
            config.init_std = parse_init_std(init)
            tuned["init"] = init
        title = f"LightGCN {recipe} recipe on {dataset} (test part)"
        if tuned:
            title += ": " + ", ".join(f"{k}={v}" for k, v in tuned.items())
        t0 = time.perf_counter()
        frames = read_lightgcn(path, name=dataset)
        snap = snapshot_from_frames(frames, SplitSpec(name="fixed", params={"val_fraction": 0.0}), seed=seed)
        data = InteractionData.from_snapshot(snap)
        load_s = time.perf_counter() - t0
        dev = resolve_device(device)
        typer.echo(
            f"{dataset}: {data.num_users} users, {data.num_items} items, train {len(data.train)}, test {len(data.test)} "
            f"(read + snapshot {load_s:.1f} s); device {dev}, torch threads {torch.get_num_threads()}"
        )
        model = create_model(config, data)
        evaluator = Evaluator(data, "test", ks=[20], batch_users=config.eval_batch_users, device=dev)
        out.mkdir(parents=True, exist_ok=True)
        state = load_train_state(out) if resume else None
        history: list[dict[str, Any]] = list(state.history) if state else []
        segments: list[dict[str, Any]] = list(state.segments) if state else []
        if state:
            typer.echo(f"resuming after epoch {state.epoch} from {out}")
        started = time.perf_counter()

        def report() -> dict[str, Any]:
            times = [h["seconds"] for h in history]
            evals = [h for h in history if h.get("metrics")]
            summary = {
                "dataset": dataset,
                "recipe": recipe,
                "overrides": tuned,
                "config": config.model_dump(),
                "device": str(dev),
                "cpu": platform.processor() or platform.machine(),
                "torch_threads": torch.get_num_threads(),
                "epochs_run": len(history),
                "mean_epoch_seconds": sum(times) / len(times) if times else None,
                "min_epoch_seconds": min(times) if times else None,
                "mean_eval_seconds": sum(h["eval_seconds"] for h in evals) / len(evals) if evals else None,
                "best": max(({"epoch": h["epoch"], **h["metrics"]} for h in evals), key=lambda r: r["ndcg@20"], default=None),
                "segments": segments,
                "history": history,
                "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                "note": "timings on a shared machine (other jobs may run beside this one) unless stated otherwise",
            }
            (out / "bench_train.json").write_text(json.dumps(summary, indent=2))
            plot_curves(out / "bench_train.png", history, title=title)
            return summary

        def on_epoch(rec: EpochRecord) -> bool:
            line = f"epoch {rec.epoch:4d}  loss {rec.loss:.5f}  {rec.seconds:6.2f} s"
            stop = time_limit is not None and time.perf_counter() - started > time_limit
            # evaluate before stopping too, so the saved state's history ends with metrics
            if rec.epoch % config.eval_every == 0 or rec.epoch == config.epochs or stop:
                ev = evaluator.evaluate(model)
                rec.metrics, rec.eval_seconds = ev.metrics, ev.seconds
                line += f"  eval {ev.seconds:5.2f} s  recall@20 {ev['recall@20']:.4f}  ndcg@20 {ev['ndcg@20']:.4f}"
            typer.echo(line)
            history.append(dict(rec.__dict__))
            report()
            return stop

        result = train_model(model, data, config, progress=False, on_epoch=on_epoch, state_path=out, resume=state)
        segments[:] = result.segments
        if not history or not history[-1].get("metrics"):
            ev = evaluator.evaluate(model)
            if history:
                history[-1]["metrics"], history[-1]["eval_seconds"] = ev.metrics, ev.seconds
            typer.echo(f"final eval {ev.seconds:.2f} s  recall@20 {ev['recall@20']:.4f}  ndcg@20 {ev['ndcg@20']:.4f}")
        summary = report()
        typer.echo(json.dumps({k: v for k, v in summary.items() if k not in ("history", "config")}, indent=2))
        typer.echo(f"wrote {out / 'bench_train.json'} and {out / 'bench_train.png'}")
