"""Training loop for any :class:`gnn.models.RecModel`: BPR / sampled-softmax, Adam, early stopping.

One epoch = every training interaction once as a positive, in a seeded random order (or, with
``positive_sampling="user"``, as many uniformly drawn users with one random training item each; with
``"user_distinct"``, full batches of distinct uniformly drawn users: :func:`gnn.sampling.epoch_positives`), with
``num_negatives`` uniform negatives per positive drawn at the start of the epoch (vectorised,
never a positive), or, with ``shared_negatives``, ``num_negatives`` uniform items drawn per step
and shared by the whole batch (a row's own positive masked out). Each step propagates the full graph (LightGCN's formulation), scores the
batch, adds the L2 term on the batch's ego embeddings and takes an Adam step. Every
``eval_every`` epochs the validation part is evaluated; the best state (by ``monitor``) is kept
and restored at the end; ``patience`` evaluations without improvement stop training. With a state
path, a :class:`gnn.train_state.TrainState` is saved at every evaluation and when training stops, and a
run given one continues where it left off (:mod:`gnn.train_state`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.profiler import record_function
from tqdm.auto import tqdm

from graphrec.clock import utc_now_iso
from graphrec.errors import ModelError
from gnn.config import TrainConfig
from gnn.data import InteractionData
from gnn.evaluate import Evaluator, resolve_device
from gnn.host_memory import freed_memory_retained
from gnn.losses import l2_ego, make_loss
from gnn.models import RecModel, build_model
from gnn.sampling import NegativeSampler, epoch_positives
from gnn.train_state import TrainState, cpu_copy, restore_generator, save_train_state

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    """What happened in one epoch (``metrics`` only on evaluation epochs)."""

    epoch: int
    loss: float
    seconds: float
    metrics: dict[str, float] | None = None
    eval_seconds: float | None = None


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`; ``model`` holds the best state."""

    model: RecModel
    config: TrainConfig
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    segments: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """History and summary as JSON-able data."""
        return {
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "stopped_early": self.stopped_early,
            "segments": self.segments,
            "history": [r.__dict__ for r in self.history],
        }


def seed_everything(seed: int) -> None:
    """Seed torch's CPU and CUDA generators."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def create_model(config: TrainConfig, data: InteractionData) -> RecModel:
    """Build the config's model for ``data`` (seeded) with the training interactions set."""
    seed_everything(config.seed)
    model = build_model(config.model, num_users=data.num_users, num_items=data.num_items, **config.model_kwargs())
    if not isinstance(model, RecModel):
        raise ModelError(f"model type {config.model!r} is not trainable")
    if model.similarity != config.similarity:
        raise ModelError(f"model type {config.model!r} does not support similarity {config.similarity!r}")
    model.set_interactions(data.train.users, data.train.items)
    return model


def make_optimizer(model: RecModel, lr: float) -> torch.optim.Optimizer:
    """Adam over the model's parameters, fused where torch has a fused kernel for their device.

    Fused Adam runs one kernel per parameter instead of a dozen elementwise passes over the
    embedding table; its update is Adam's (checked against a textbook step in the unit tests).
    """
    params = list(model.parameters())
    device_type = params[0].device.type if params else "cpu"
    return torch.optim.Adam(params, lr=lr, fused=device_type in ("cpu", "cuda"))


def batch_loss(model: RecModel, loss_fn: torch.nn.Module, users: Tensor, pos: Tensor, neg: Tensor, reg: float) -> Tensor:
    r"""Loss of one training batch: the ranking loss plus ``reg`` times the L2 term on its ego embeddings.

    Args:
        model: The model being trained.
        loss_fn: :class:`gnn.losses.BPRLoss` or :class:`gnn.losses.SampledSoftmaxLoss`.
        users: User indices, shape :math:`(B,)`.
        pos: One positive item per user, shape :math:`(B,)`.
        neg: Per-positive negatives, shape :math:`(B, N)`, or :math:`N` negatives shared by the whole
            batch, shape :math:`(N,)` (scored with one :math:`(B, d) \times (d, N)` product; a shared
            negative equal to the row's own positive is masked out of that row).
        reg: Weight of :func:`gnn.losses.l2_ego`.
    """
    emb = model.batch_embeddings(users, pos, neg)
    shared = neg.dim() == 1
    if shared:
        neg_scores = (emb.users @ emb.neg.t()).masked_fill(neg.unsqueeze(0) == pos.unsqueeze(1), -math.inf)
    else:
        neg_scores = torch.einsum("bd,bnd->bn", emb.users, emb.neg)
    pos_scores = (emb.users * emb.pos).sum(-1)
    return loss_fn(pos_scores, neg_scores) + reg * l2_ego(emb.users0, emb.pos0, emb.neg0, shared=shared)


def training_step(
    model: RecModel,
    opt: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    users: Tensor,
    pos: Tensor,
    neg: Tensor,
    reg: float,
    *,
    annotate: bool = False,
) -> Tensor:
    """One optimiser step on one batch (see :func:`batch_loss`); returns the detached loss.

    With ``annotate``, the forward pass, the backward pass (with the zeroing of the gradients) and
    the optimiser step run inside :func:`torch.profiler.record_function` ranges named
    ``graphrec.forward``, ``graphrec.backward`` and ``graphrec.optimizer`` (the phases
    :mod:`gnn.step_profile` reports); without it, in no range.
    """
    phase = record_function if annotate else _no_range
    with phase("graphrec.forward"):
        loss = batch_loss(model, loss_fn, users, pos, neg, reg)
    with phase("graphrec.backward"):
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with phase("graphrec.optimizer"):
        opt.step()
    return loss.detach()


def _no_range(name: str) -> AbstractContextManager[None]:
    """No profiler range (the training loop's default)."""
    return nullcontext()


@dataclass
class TrainingPairs:
    """What every epoch draws its batches from, on the training device.

    Attributes:
        sampler: Each user's training items (negatives are never among them).
        users: User of every training pair whose user has at least one negative.
        items: Item of every such pair.
        user_pool: The distinct users of ``users`` (what user-uniform sampling draws from).
        num_items: Size of the item vocabulary (shared negatives are drawn from it).
    """

    sampler: NegativeSampler
    users: Tensor
    items: Tensor
    user_pool: Tensor
    num_items: int

    @classmethod
    def from_data(cls, data: InteractionData, device: torch.device) -> TrainingPairs:
        """The training part of ``data`` on ``device``, less the users with no possible negative.

        Raises:
            ModelError: No training pair is left (every user interacted with every item).
        """
        sampler = NegativeSampler(data.train.users, data.train.items, data.num_users, data.num_items).to(device)
        users = data.train.users.to(device)
        items = data.train.items.to(device)
        keep = sampler.has_negatives(users)
        users, items = users[keep], items[keep]
        if users.numel() == 0:
            raise ModelError("every training user interacted with every item: no negatives to sample")
        return cls(sampler=sampler, users=users, items=items, user_pool=torch.unique(users), num_items=data.num_items)

    def steps(self, batch_size: int) -> int:
        """Optimisation steps per epoch at ``batch_size``."""
        return (self.users.numel() + batch_size - 1) // batch_size


def epoch_batches(pairs: TrainingPairs, config: TrainConfig, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One epoch's ``(users, positives, negatives)`` batches, in step order.

    The epoch's positives (:func:`gnn.sampling.epoch_positives`) and, unless
    ``config.shared_negatives``, its per-positive negatives are drawn when the first batch is asked
    for; shared negatives (``config.num_negatives`` uniform items per step) are drawn per batch.
    ``generator`` is consumed in that order, so a seeded run draws the same batches every time.
    """
    users_e, items_e = epoch_positives(
        config.positive_sampling, pairs.sampler, pairs.users, pairs.items, pairs.user_pool, config.batch_size, generator
    )
    negs_e = None if config.shared_negatives else pairs.sampler.sample(users_e, config.num_negatives, generator)
    for s in range(pairs.steps(config.batch_size)):
        sl = slice(s * config.batch_size, (s + 1) * config.batch_size)
        if negs_e is None:
            # one set of uniform negatives for the whole batch
            neg = torch.randint(0, pairs.num_items, (config.num_negatives,), generator=generator, device=users_e.device)
        else:
            neg = negs_e[sl]
        yield users_e[sl], items_e[sl], neg


def train_model(
    model: RecModel,
    data: InteractionData,
    config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], bool | None] | None = None,
    state_path: Path | None = None,
    resume: TrainState | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train`` with early stopping on ``data.val``.

    Args:
        model: Any :class:`RecModel` (its interactions must be the training part).
        data: The snapshot's interactions.
        config: Hyperparameters (``seed`` makes runs repeatable on the same device).
        progress: Show a tqdm bar with the loss and the last validation metrics.
        on_epoch: Called after every epoch with its record (it may add ``metrics`` to it); returning
            ``True`` stops training after this epoch (e.g. a time budget).
        state_path: Save a :class:`TrainState` here (a file, or a folder for ``train_state.pt``) after
            every evaluation epoch and the last epoch run.
        resume: Continue from this state (made with the same data and settings, see
            :meth:`TrainState.check_resumable`): parameters, optimiser, generator, early stopping and
            history are restored and training goes on from the next epoch.

    Returns:
        A :class:`TrainResult`; ``result.model`` is ``model`` with the best validation state loaded.

    Raises:
        ModelError: No training interactions, or no user has any negative.
        InvalidArgumentError: ``resume`` does not fit ``data`` / ``config``.
    """
    if len(data.train) == 0:
        raise ModelError("no training interactions")
    device = resolve_device(config.device)
    model.to(device)
    model.train()
    gen = torch.Generator(device=device).manual_seed(config.seed)
    pairs = TrainingPairs.from_data(data, device)
    loss_fn = make_loss(config.loss, config.temperature)
    opt = make_optimizer(model, config.lr)
    evaluator = (
        Evaluator(data, "val", ks=config.ks, batch_users=config.eval_batch_users, device=device) if len(data.val) else None
    )
    monitor = config.monitor
    result = TrainResult(model=model, config=config)
    best_value = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals = 0
    start = 0
    segment: dict[str, object] = {
        "first_epoch": 1, "device": str(device), "torch_threads": torch.get_num_threads(),
        "freed_memory_retained": freed_memory_retained(), "started_at": utc_now_iso(),
    }
    if resume is not None:
        resume.check_resumable(config, data.snapshot_hash)
        model.load_state_dict(resume.model_state)
        opt.load_state_dict(resume.optimizer_state)
        if not restore_generator(gen, resume, config.seed):
            log.warning("training state from %s continues on %s: generator reseeded", resume.generator_device, device.type)
            segment["generator_reseeded"] = True
        best_value, bad_evals, best_state = resume.best_value, resume.bad_evals, resume.best_state
        result.best_epoch, result.best_metrics = resume.best_epoch, dict(resume.best_metrics)
        result.history = [EpochRecord(**h) for h in resume.history]
        result.segments = [dict(s) for s in resume.segments]
        start = resume.epoch
        segment["first_epoch"] = start + 1
    result.segments.append(segment)

    def save_state(epoch: int, path: Path) -> None:
        segment["last_epoch"] = epoch
        state = TrainState(
            epoch=epoch, config=config.model_dump(), snapshot_hash=data.snapshot_hash,
            model_state=cpu_copy(model.state_dict()), optimizer_state=opt.state_dict(),
            generator_state=gen.get_state(), generator_device=device.type,
            best_value=best_value, best_epoch=result.best_epoch, best_metrics=dict(result.best_metrics),
            best_state=cpu_copy(best_state) if best_state is not None else None, bad_evals=bad_evals,
            history=[dict(r.__dict__) for r in result.history], segments=result.segments,
        )
        save_train_state(path, state)

    steps = pairs.steps(config.batch_size)
    bar = tqdm(
        range(start + 1, config.epochs + 1), desc=f"train {config.model}", unit="epoch", disable=not progress,
        dynamic_ncols=True, initial=start, total=config.epochs,
    )
    postfix: dict[str, str] = {}
    for epoch in bar:
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        for bu, bp, bn in epoch_batches(pairs, config, gen):
            total += training_step(model, opt, loss_fn, bu, bp, bn, config.reg)
        record = EpochRecord(epoch=epoch, loss=float(total) / steps, seconds=time.perf_counter() - t0)
        postfix["loss"] = f"{record.loss:.4f}"
        evaluation_epoch = epoch % config.eval_every == 0 or epoch == config.epochs
        if evaluator is not None and evaluation_epoch:
            model.eval()
            ev = evaluator.evaluate(model)
            model.train()
            record.metrics, record.eval_seconds = ev.metrics, ev.seconds
            value = ev.metrics.get(monitor)
            if value is None:
                raise ModelError(f"monitor {monitor!r} is not among the validation metrics {sorted(ev.metrics)}")
            postfix[monitor] = f"{value:.4f}"
            if value > best_value:
                best_value, bad_evals = value, 0
                result.best_epoch, result.best_metrics = epoch, dict(ev.metrics)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_evals += 1
        bar.set_postfix(postfix)
        result.history.append(record)
        log.info("epoch %d loss %.5f %.2fs %s", epoch, record.loss, record.seconds, record.metrics or "")
        stop = on_epoch is not None and bool(on_epoch(record))
        if config.patience and bad_evals >= config.patience:
            result.stopped_early = stop = True
        if state_path is not None and (evaluation_epoch or stop):
            save_state(epoch, state_path)
        if stop:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = result.history[-1].epoch if result.history else None
    model.eval()
    return result
