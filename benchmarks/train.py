"""``graphrec bench train``: LightGCN training speed and accuracy on the LightGCN Gowalla split,
or (``--model gfcf|chebycf|ease|auto``) a closed-form graph filter's fit and evaluation
(:mod:`gnn.filters.bench`).

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

from api.cli import recipe_options as opts


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``bench train`` to the shared ``bench`` sub-app."""

    @bench_app.command("train")
    def bench_train(
        dataset: str = opts.DATASET,
        path: Path = opts.PATH,
        recipe: str = opts.RECIPE,
        epochs: int = typer.Option(20, help="Epochs to run."),
        eval_every: int = typer.Option(20, help="Evaluate the test part every N epochs (and after the last)."),
        batch_size: int | None = opts.BATCH_SIZE,
        num_negatives: int | None = opts.NUM_NEGATIVES,
        loss: str | None = opts.LOSS,
        lr: float | None = opts.LR,
        reg: float | None = opts.REG,
        temperature: float | None = opts.TEMPERATURE,
        similarity: str | None = opts.SIMILARITY,
        shared_negatives: bool | None = opts.SHARED_NEGATIVES,
        positive_sampling: str | None = opts.POSITIVE_SAMPLING,
        init: str | None = opts.INIT,
        threads: int | None = opts.THREADS,
        device: str = opts.DEVICE,
        seed: int = opts.SEED,
        retain_memory: bool = opts.RETAIN_MEMORY,
        time_limit: float | None = typer.Option(None, help="Stop after this many seconds (after the running epoch)."),
        out: Path = typer.Option(Path("bench-train"), help="Output folder for the JSON, the PNG and the training state."),
        resume: bool = typer.Option(
            False, "--resume/--no-resume",
            help="Continue from the training state in --out (give the same options; --epochs, --eval-every and --device may change).",
        ),
        model: str = opts.MODEL,
        filter_param: list[str] = opts.FILTER_PARAM,
        neighbours_top_k: int | None = opts.NEIGHBOURS_TOP_K,
        select_on: str = opts.SELECT_ON,
        budget: float = opts.SELECT_BUDGET,
        max_val_users: int = opts.MAX_VAL_USERS,
    ) -> None:
        """Run a training recipe (or fit a graph filter) on LightGCN-format data; print times and accuracy."""
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        if retain_memory:
            from gnn.host_memory import retain_freed_memory

            retain_freed_memory()
        if model != "lightgcn":
            opts.run_filter_bench_command(
                dataset=dataset, path=path, model=model, filter_param=filter_param, neighbours_top_k=neighbours_top_k,
                select_on=select_on, budget=budget, max_val_users=max_val_users, device=device, seed=seed, out=out,
            )
            return
        from gnn.evaluate import Evaluator, resolve_device
        from gnn.plots import plot_curves
        from gnn.train import EpochRecord, create_model, train_model
        from gnn.train_state import load_train_state

        config, tuned = opts.recipe_config(recipe, dict(
            epochs=epochs, eval_every=eval_every, device=device, seed=seed,
            batch_size=batch_size, num_negatives=num_negatives, loss=loss, lr=lr, reg=reg,
            temperature=temperature, similarity=similarity, shared_negatives=shared_negatives,
            positive_sampling=positive_sampling,
        ), init)
        title = f"LightGCN {recipe} recipe on {dataset} (test part)"
        if tuned:
            title += ": " + ", ".join(f"{k}={v}" for k, v in tuned.items())
        data, load_s = opts.load_fixed_split(path, dataset, seed)
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
