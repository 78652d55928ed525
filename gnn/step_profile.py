"""Where a training step's time goes: timings of the real step, and a profile of its phases and ops.

:func:`profile_training_steps` runs the same batches (:func:`gnn.train.epoch_batches`) and the same
step (:func:`gnn.train.training_step`) as :func:`gnn.train.train_model`, on a model it trains
along the way, and measures:

- the epoch's sampling (positives and negatives for every step), median of ``sampling_repeats``;
- every step alone (the device synchronised before and after it): median, 10th and 90th percentile;
- steps back to back (synchronised only at the end of the window): mean time per step, what an
  epoch pays; ``projected_epoch_seconds`` = sampling + steps per epoch x that mean; and the
  process's minor page faults per step meanwhile (fresh host memory being mapped in,
  see :mod:`gnn.host_memory`);
- under :mod:`torch.profiler`, the three phases of the step (the ``graphrec.forward`` /
  ``graphrec.backward`` / ``graphrec.optimizer`` ranges) and the ops with the largest self time,
  on the CPU and, on a GPU, on the device (CUDA kernels); optionally a Chrome trace.

The profiler's own overhead inflates what it reports, so the phase and op tables say where the time
goes, and the timings without the profiler say how much there is.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from graphrec.errors import InvalidArgumentError
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.evaluate import resolve_device
from gnn.losses import make_loss
from gnn.models import RecModel
from gnn.train import TrainingPairs, epoch_batches, make_optimizer, training_step

#: The step's profiler ranges (see :func:`gnn.train.training_step`), in step order.
PHASES: tuple[str, ...] = ("graphrec.forward", "graphrec.backward", "graphrec.optimizer")


@dataclass
class OpTime:
    """One profiler row, per step: calls, self / total CPU ms, self / total device ms."""

    name: str
    calls: float
    self_cpu_ms: float
    cpu_ms: float
    self_device_ms: float
    device_ms: float


@dataclass
class StepProfile:
    """Outcome of :func:`profile_training_steps` (times in ms per step unless named otherwise)."""

    device: str
    torch_threads: int
    batch_size: int
    steps_per_epoch: int
    sampling_seconds: list[float]
    step_ms: list[float]
    back_to_back_ms: float
    page_faults_per_step: float | None
    profiled_steps: int
    phases: list[OpTime] = field(default_factory=list)
    top_ops: list[OpTime] = field(default_factory=list)
    trace: str | None = None

    @property
    def epoch_sampling_seconds(self) -> float:
        """Median of the timed epoch samplings."""
        return statistics.median(self.sampling_seconds)

    @property
    def step_median_ms(self) -> float:
        """Median of the synchronised single-step times."""
        return statistics.median(self.step_ms)

    @property
    def step_spread_ms(self) -> tuple[float, float]:
        """10th and 90th percentile of the synchronised single-step times."""
        if len(self.step_ms) < 2:
            return self.step_ms[0], self.step_ms[0]
        deciles = statistics.quantiles(self.step_ms, n=10, method="inclusive")
        return deciles[0], deciles[-1]

    @property
    def projected_epoch_seconds(self) -> float:
        """Sampling plus ``steps_per_epoch`` back-to-back steps: what one epoch of training costs."""
        return self.epoch_sampling_seconds + self.steps_per_epoch * self.back_to_back_ms / 1000.0

    def to_json(self) -> dict[str, object]:
        """All fields plus the median and the projected epoch, JSON-able."""
        out = asdict(self)
        out["epoch_sampling_seconds"] = self.epoch_sampling_seconds
        out["step_median_ms"] = self.step_median_ms
        out["step_p10_ms"], out["step_p90_ms"] = self.step_spread_ms
        out["projected_epoch_seconds"] = self.projected_epoch_seconds
        return out


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _minor_faults() -> int | None:
    """The process's minor page faults so far (``None`` where :mod:`resource` does not exist)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _op_time(event: object, steps: int) -> OpTime:
    def us(name: str) -> float:
        # torch >= 2.4 names device times device_*; older releases cuda_*
        value = getattr(event, name, None)
        if value is None:
            value = getattr(event, name.replace("device", "cuda"), 0.0)
        return float(value or 0.0)

    return OpTime(
        name=str(getattr(event, "key")),
        calls=float(getattr(event, "count")) / steps,
        self_cpu_ms=us("self_cpu_time_total") / 1000.0 / steps,
        cpu_ms=us("cpu_time_total") / 1000.0 / steps,
        self_device_ms=us("self_device_time_total") / 1000.0 / steps,
        device_ms=us("device_time_total") / 1000.0 / steps,
    )


def profile_training_steps(
    model: RecModel,
    data: InteractionData,
    config: TrainConfig,
    *,
    steps: int = 50,
    warmup: int = 10,
    profiled_steps: int = 20,
    sampling_repeats: int = 3,
    top: int = 15,
    trace_path: Path | None = None,
) -> StepProfile:
    """Time and profile ``config``'s training step on ``data`` (``model`` is trained meanwhile).

    Args:
        model: A model from :func:`gnn.train.create_model` (moved to ``config.device``).
        data: The interactions (only the training part is used).
        config: The recipe: batch size, negatives, loss, sampling, device, seed.
        steps: Steps timed one by one, and again back to back.
        warmup: Steps run first and not measured (allocator, kernel selection, caches).
        profiled_steps: Steps run under the profiler.
        sampling_repeats: Epoch samplings timed (the median is reported).
        top: Ops listed, by self device time on a GPU, by self CPU time otherwise.
        trace_path: Write the profiled steps' Chrome trace here (open it in Perfetto or chrome://tracing).

    Returns:
        A :class:`StepProfile`.

    Raises:
        InvalidArgumentError: A count below 1 (``warmup`` below 0).
        ModelError: No training pair has a possible negative.
    """
    if min(steps, profiled_steps, sampling_repeats, top) < 1 or warmup < 0:
        raise InvalidArgumentError("steps, profiled_steps, sampling_repeats and top must be >= 1, warmup >= 0")
    device = resolve_device(config.device)
    sync = _synchronizer(device)
    model.to(device)
    model.train()
    gen = torch.Generator(device=device).manual_seed(config.seed)
    pairs = TrainingPairs.from_data(data, device)
    loss_fn = make_loss(config.loss, config.temperature)
    opt = make_optimizer(model, config.lr)

    sampling: list[float] = []
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for _ in range(sampling_repeats):
        sync()
        t0 = time.perf_counter()
        batches = list(epoch_batches(pairs, config, gen))
        sync()
        sampling.append(time.perf_counter() - t0)
    cursor = 0

    def step(annotate: bool = False) -> None:
        nonlocal cursor
        users, pos, neg = batches[cursor % len(batches)]
        cursor += 1
        training_step(model, opt, loss_fn, users, pos, neg, config.reg, annotate=annotate)

    for _ in range(warmup):
        step()
    step_ms: list[float] = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        step_ms.append((time.perf_counter() - t0) * 1000.0)
    sync()
    faults0 = _minor_faults()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    back_to_back_ms = (time.perf_counter() - t0) * 1000.0 / steps
    faults1 = _minor_faults()
    faults = (faults1 - faults0) / steps if faults0 is not None and faults1 is not None else None

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(profiled_steps):
            step(annotate=True)
        sync()
    events = prof.key_averages()
    rows = {str(e.key): _op_time(e, profiled_steps) for e in events}
    phases = [rows[name] for name in PHASES if name in rows]
    ops = [r for name, r in rows.items() if not name.startswith(("graphrec.", "ProfilerStep"))]
    by_device = device.type == "cuda"
    ops.sort(key=lambda r: r.self_device_ms if by_device else r.self_cpu_ms, reverse=True)
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    return StepProfile(
        device=str(device),
        torch_threads=torch.get_num_threads(),
        batch_size=config.batch_size,
        steps_per_epoch=pairs.steps(config.batch_size),
        sampling_seconds=sampling,
        step_ms=step_ms,
        back_to_back_ms=back_to_back_ms,
        page_faults_per_step=faults,
        profiled_steps=profiled_steps,
        phases=phases,
        top_ops=ops[:top],
        trace=str(trace_path) if trace_path is not None else None,
    )
