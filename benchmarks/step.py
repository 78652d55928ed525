"""``graphrec bench step``: where one training step's time goes, on the CPU or the GPU.

Runs a recipe's real training step (:func:`gnn.step_profile.profile_training_steps`) on
LightGCN-format data and prints the epoch's sampling time, the step alone and back to back, the
projected epoch time, the forward / backward / optimiser split and the ops with the largest self
time; writes it all as JSON (and, with ``--trace``, a Chrome trace of the profiled steps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from api.cli import recipe_options as opts

if TYPE_CHECKING:
    from gnn.step_profile import OpTime


def _table(rows: list[OpTime], device: bool) -> list[str]:
    """Profiler rows as aligned text lines (device columns only for a GPU run)."""
    head = f"  {'':<44} {'calls':>6} {'self cpu':>9} {'cpu':>9}"
    head += f" {'self dev':>9} {'dev':>9}" if device else ""
    lines = [head]
    for r in rows:
        line = f"  {r.name[:44]:<44} {r.calls:6.1f} {r.self_cpu_ms:9.3f} {r.cpu_ms:9.3f}"
        line += f" {r.self_device_ms:9.3f} {r.device_ms:9.3f}" if device else ""
        lines.append(line)
    return lines


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``bench step`` to the shared ``bench`` sub-app."""

    @bench_app.command("step")
    def bench_step(
        dataset: str = opts.DATASET,
        path: Path = opts.PATH,
        recipe: str = opts.RECIPE,
        batch_size: int | None = opts.BATCH_SIZE,
        num_negatives: int | None = opts.NUM_NEGATIVES,
        loss: str | None = opts.LOSS,
        temperature: float | None = opts.TEMPERATURE,
        similarity: str | None = opts.SIMILARITY,
        shared_negatives: bool | None = opts.SHARED_NEGATIVES,
        positive_sampling: str | None = opts.POSITIVE_SAMPLING,
        threads: int | None = opts.THREADS,
        device: str = opts.DEVICE,
        seed: int = opts.SEED,
        retain_memory: bool = opts.RETAIN_MEMORY,
        steps: int = typer.Option(50, min=1, help="Steps timed one by one, then again back to back."),
        warmup: int = typer.Option(10, min=0, help="Steps run first and not measured."),
        profiled_steps: int = typer.Option(20, min=1, help="Steps run under torch.profiler."),
        top: int = typer.Option(15, min=1, help="Ops listed (by self device time on a GPU, self CPU time otherwise)."),
        trace: bool = typer.Option(False, "--trace/--no-trace", help="Also write step_trace.json (Chrome trace) in --out."),
        out: Path = typer.Option(Path("bench-step"), help="Output folder for bench_step.json (and the trace)."),
    ) -> None:
        """Time and profile a recipe's training step: sampling, step, projected epoch, phases, top ops."""
        import os
        import platform

        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        from gnn.evaluate import resolve_device
        from gnn.host_memory import freed_memory_retained, retain_freed_memory
        from gnn.step_profile import profile_training_steps
        from gnn.train import create_model

        if retain_memory:
            retain_freed_memory()
        retained = freed_memory_retained()

        if resolve_device(device).type == "cpu":
            # the profiler's CUDA probe logs an ERROR line on machines without a GPU; keep its warnings out too
            os.environ.setdefault("KINETO_LOG_LEVEL", "5")

        config, tuned = opts.recipe_config(recipe, dict(
            device=device, seed=seed, batch_size=batch_size, num_negatives=num_negatives, loss=loss,
            temperature=temperature, similarity=similarity, shared_negatives=shared_negatives,
            positive_sampling=positive_sampling,
        ))
        data, load_s = opts.load_fixed_split(path, dataset, seed)
        model = create_model(config, data)
        out.mkdir(parents=True, exist_ok=True)
        result = profile_training_steps(
            model, data, config, steps=steps, warmup=warmup, profiled_steps=profiled_steps, top=top,
            trace_path=out / "step_trace.json" if trace else None,
        )
        on_gpu = result.device.startswith("cuda")
        p10, p90 = result.step_spread_ms
        lines = [
            f"{dataset}: {data.num_users} users, {data.num_items} items, train {len(data.train)} (read {load_s:.1f} s)",
            f"{recipe} recipe{': ' + ', '.join(f'{k}={v}' for k, v in tuned.items()) if tuned else ''}; "
            f"batch {result.batch_size}, {result.steps_per_epoch} steps per epoch; device {result.device}"
            + (f" ({torch.cuda.get_device_name(result.device)})" if on_gpu else "")
            + f", torch threads {result.torch_threads}, freed memory retained: {'yes' if retained else 'no'}",
            f"epoch sampling      {result.epoch_sampling_seconds * 1000:9.1f} ms (median of {len(result.sampling_seconds)})",
            f"step alone          {result.step_median_ms:9.2f} ms median (p10 {p10:.2f}, p90 {p90:.2f}; {steps} steps, synchronised)",
            f"steps back to back  {result.back_to_back_ms:9.2f} ms per step (mean of {steps})"
            + (f", {result.page_faults_per_step:.0f} minor page faults per step" if result.page_faults_per_step is not None else ""),
            f"projected epoch     {result.projected_epoch_seconds:9.2f} s (sampling + {result.steps_per_epoch} back-to-back steps)",
            f"phases under the profiler, ms per step ({result.profiled_steps} steps; the profiler adds its own overhead):",
            *_table(result.phases, on_gpu),
            f"top {len(result.top_ops)} ops by self {'device' if on_gpu else 'CPU'} time, ms per step:",
            *_table(result.top_ops, on_gpu),
        ]
        typer.echo("\n".join(lines))
        report = {
            "dataset": dataset, "recipe": recipe, "overrides": tuned, "config": config.model_dump(),
            "cpu": platform.processor() or platform.machine(), "retain_memory": retained,
            "gpu": torch.cuda.get_device_name(result.device) if on_gpu else None,
            **result.to_json(),
            "note": "timings on a shared machine (other jobs may run beside this one) unless stated otherwise",
        }
        (out / "bench_step.json").write_text(json.dumps(report, indent=2))
        typer.echo(f"wrote {out / 'bench_step.json'}" + (f" and {result.trace}" if result.trace else ""))
