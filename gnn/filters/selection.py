"""Automatic choice of a graph filter and its settings on a validation part, in bounded time.

:func:`select_filter` scores a small grid on the validation part (Recall@20 / NDCG@20 through the
same masking and metrics as :class:`gnn.evaluate.Evaluator`, training part as history): GF-CF
(low-pass weight and rank, sharpening by an Euler or a Runge-Kutta step), EASE (L2 weight, where
it fits in memory) and Chebyshev filters (order, degree exponent, flatness, low-pass weight).
Settings that share the expensive part of the scores are evaluated in one pass (one sparse
filtering per block serves every low-pass weight, rank and flatness), passes run cheapest first
and stop at the time budget (the plain GF-CF pass always runs, and by default its Runge-Kutta
sharpened pass too: :attr:`SelectionConfig.rk4_always`), and at most
``max_val_users`` validation users (a seeded sample) are scored.

:func:`auto_fit` carves a validation part out of the training part when the data has none
(:func:`gnn.holdout.carve_validation`), selects, and refits the chosen settings on train + val;
:func:`fit_for_serving` refits a config on every part (train + val + test) for publishing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from graphrec.errors import InvalidArgumentError, ModelError
from gnn.data import InteractionData
from gnn.evaluate import Evaluator, resolve_device
from gnn.filters.base import DEFAULT_CORRECTION_RANK, DEFAULT_NEIGHBOURS_TOP_K, GraphFilter
from gnn.filters.chebyshev import chebyshev_coefficients, chebyshev_filter_t
from gnn.filters.config import FilterConfig, filter_config
from gnn.filters.ease import DEFAULT_MAX_BYTES, ease_memory_bytes
from gnn.filters.normalise import ItemGraph, degree_power
from gnn.holdout import DEFAULT_VAL_FRACTION, carve_validation, merge_parts
from gnn.metrics import METRIC_FUNCTIONS

log = logging.getLogger(__name__)

ALL_PARTS: tuple[str, ...] = ("train", "val", "test")


class SelectionConfig(BaseModel):
    """What :func:`select_filter` searches and how long it may take."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    models: list[str] = Field(default_factory=lambda: ["gfcf", "ease", "chebycf"])
    """Filter families to consider (EASE only where its dense matrices fit in ``ease_max_bytes``)."""
    time_budget_s: float = Field(600.0, gt=0)
    """Wall-clock budget of the search: no pass starts once it is spent or would overrun it (estimated)."""
    max_val_users: int = Field(8192, gt=0)
    """Validation users scored (a seeded sample when there are more)."""
    val_fraction: float = Field(DEFAULT_VAL_FRACTION, gt=0, lt=1)
    """Share of each user's training interactions carved out when the data has no validation part."""
    seed: int = 0
    """Seed of the carving and of the user sample."""
    monitor: str = "ndcg@20"
    """Validation metric to maximise (``ndcg@20`` or ``recall@20``)."""
    alphas: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5, 1.0])
    """Low-pass weights tried."""
    ranks: list[int] = Field(default_factory=lambda: [128, 256, 512])
    """Low-pass ranks tried with GF-CF (the Chebyshev filters use the best of them)."""
    sharpens: list[float] | None = None
    """GF-CF sharpening times tried with one Euler step (BSPM's inverse heat step; 0 is plain GF-CF). ``None``: 0, 0.5 and 1
    when the chosen model scores with its exact item-item part or its cut carries a low-rank
    correction (``correction_rank`` > 0), only 0 otherwise: the search scores exact filters, and a
    plain cut drops the sharpening's negative item-item weights (on Gowalla its validation gain
    vanished at 100 neighbours per item; the correction gives it back)."""
    rk4_sharpens: list[float] = Field(default_factory=lambda: [1.5, 2.5])
    """Sharpening times tried with one Runge-Kutta step (``sharpen_order`` 4, BSPM's Gowalla recipe is T = 2.5) at the
    best GF-CF rank, with every low-pass weight; only where the Euler sharpening is tried too (see :attr:`sharpens`)."""
    rk4_always: bool = True
    """Run the Runge-Kutta pass even when the plain GF-CF pass spent the time budget. It takes about as long as that
    pass (0.8-1.2 times on Gowalla), so on large data, where one pass takes the whole default budget, the search still
    reaches the sharpened filters (the strongest on the published splits) in about two passes; ``False``: the budget
    also bounds this pass."""
    orders: list[int] = Field(default_factory=lambda: [2, 4, 8])
    """Chebyshev orders tried (cheapest first)."""
    powers: list[float] = Field(default_factory=lambda: [0.3, 0.5])
    """Degree normalisation exponents tried with the Chebyshev filters."""
    flatnesses: list[float] = Field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0, 3.0])
    """Flatness of the Chebyshev target response tried."""
    ease_regs: list[float] = Field(default_factory=lambda: [100.0, 300.0, 1000.0, 3000.0])
    """EASE L2 weights tried."""
    ease_max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    """Memory limit of EASE's dense matrices (EASE is skipped above it)."""
    neighbours_top_k: int | None = Field(DEFAULT_NEIGHBOURS_TOP_K, gt=0)
    """``neighbours_top_k`` of the chosen model (the search scores the exact filters)."""
    correction_rank: int = Field(DEFAULT_CORRECTION_RANK, ge=0)
    """``correction_rank`` of the chosen model (:mod:`gnn.filters.base`)."""
    batch_users: int = Field(1024, gt=0)
    """Users per scoring block during the search."""


    def sharpen_grid(self) -> list[float]:
        """The sharpening times to try (see :attr:`sharpens`)."""
        if self.sharpens is not None:
            return list(self.sharpens)
        return [0.0, 0.5, 1.0] if self.neighbours_top_k is None or self.correction_rank > 0 else [0.0]


@dataclass
class SelectionResult:
    """The chosen config, every candidate's validation scores, and what the search cost."""

    config: FilterConfig
    val_metrics: dict[str, float]
    candidates: list[dict[str, Any]]
    seconds: float
    val_users: int
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "val_metrics": self.val_metrics,
            "seconds": self.seconds,
            "val_users": self.val_users,
            "skipped": self.skipped,
            "candidates": self.candidates,
        }


def evaluate_candidates(evaluator: Evaluator, users: Tensor, scores: Callable[[Tensor], Iterator[Tensor]], count: int, k: int = 20) -> list[dict[str, float]]:
    """Recall@k / NDCG@k of ``count`` scorers sharing one pass over ``users`` (seen items masked as the evaluator does).

    Args:
        evaluator: Gives the masked items, the targets and the device.
        users: Users to evaluate (each must have targets).
        scores: Maps a block of users to an iterator over the ``count`` candidates' score blocks.
        count: Number of candidates.
        k: Cut-off.
    """
    sums = torch.zeros(count, 2, dtype=torch.float64)
    for start in range(0, users.numel(), evaluator.batch_users):
        block = users[start : start + evaluator.batch_users].to(evaluator.device)
        rows, cols = evaluator.exclude.gather(block)
        n_rel = evaluator.target.counts[block]
        seen = 0
        for c, s in enumerate(scores(block)):
            s = s.to(evaluator.device, torch.float32)
            s[rows, cols] = float("-inf")
            top_s, top = torch.topk(s, min(k, s.shape[1]), dim=1)
            hits = evaluator.target.contains(block.unsqueeze(1), top) & (top_s > float("-inf"))
            sums[c, 0] += float(METRIC_FUNCTIONS["recall"](hits, n_rel, k).sum())
            sums[c, 1] += float(METRIC_FUNCTIONS["ndcg"](hits, n_rel, k).sum())
            seen += 1
        if seen != count:
            raise ModelError(f"candidate scorer gave {seen} score blocks, expected {count}")
    n = max(users.numel(), 1)
    return [{f"recall@{k}": float(r) / n, f"ndcg@{k}": float(g) / n} for r, g in sums.tolist()]


def _sample_users(evaluator: Evaluator, limit: int, seed: int) -> Tensor:
    users = evaluator.users
    if users.numel() <= limit:
        return users
    gen = torch.Generator().manual_seed(seed)
    return users[torch.randperm(users.numel(), generator=gen)[:limit].to(users.device)].sort().values


class _Search:
    """State of one search: the graph, the shared low-pass basis, the candidates scored so far."""

    def __init__(self, data: InteractionData, cfg: SelectionConfig, device: torch.device) -> None:
        self.cfg, self.device, self.data = cfg, device, data
        self.graph = ItemGraph(data.train.users.to(device), data.train.items.to(device), data.num_users, data.num_items, device)
        self.evaluator = Evaluator(data, "val", ks=[20], metrics=("recall", "ndcg"), batch_users=cfg.batch_users, device=device)
        self.users = _sample_users(self.evaluator, cfg.max_val_users, cfg.seed)
        max_rank = max(cfg.ranks) if cfg.ranks else 0
        self.basis, _ = self.graph.low_pass_basis(max_rank) if max_rank and any(cfg.alphas) else (torch.zeros(data.num_items, 0, device=device), None)
        self.candidates: list[dict[str, Any]] = []
        self.best_rank = min(256, self.basis.shape[1])

    def factors(self, power: float, rank: int) -> tuple[Tensor, Tensor]:
        d = self.graph.item_degree.unsqueeze(1)
        v = self.basis[:, :rank]
        return degree_power(d, -power) * v, degree_power(d, power) * v

    def record(self, configs: list[FilterConfig], metrics: list[dict[str, float]], seconds: float) -> None:
        for c, m in zip(configs, metrics):
            self.candidates.append({"config": c.model_dump(exclude={"batch_users", "neighbours_top_k", "correction_rank", "factor_rank"}), **m, "pass_seconds": round(seconds, 2)})

    def run(self, configs: list[FilterConfig], scores: Callable[[Tensor], Iterator[Tensor]]) -> float:
        t0 = time.perf_counter()
        metrics = evaluate_candidates(self.evaluator, self.users, scores, len(configs))
        seconds = time.perf_counter() - t0
        self.record(configs, metrics, seconds)
        return seconds

    # -- passes ----------------------------------------------------------------------------------------
    def gfcf_pass(self, sharpens: list[float]) -> float:
        """GF-CF over ranks x low-pass weights x (Euler) sharpening times, from one pass: per block, the
        linear part, its sharpened copy and each rank's low-rank parts are computed once and combined.
        The best rank of the pass (when it has ranks) is the one later passes use."""
        combos = [(r, a) for r in self.cfg.ranks if r <= self.basis.shape[1] for a in self.cfg.alphas if a > 0] + [(0, 0.0)]
        sharpens = sorted(set(sharpens)) or [0.0]
        configs = [
            filter_config("gfcf", alpha=a, rank=r, sharpen=t, neighbours_top_k=self.cfg.neighbours_top_k, correction_rank=self.cfg.correction_rank)
            for t in sharpens for r, a in combos
        ]
        facs = {r: self.factors(0.5, r) for r, _ in combos if r}
        sharp = any(sharpens)
        facs_p = {r: self.graph.propagate_t(q) for r, (_, q) in facs.items()} if sharp else {}

        def scores(users: Tensor) -> Iterator[Tensor]:
            h = self.graph.history_rows(users)
            lin_t = self.graph.propagate_t(h.to_dense().t().contiguous())
            lin2 = self.graph.propagate_t(lin_t).t() if sharp else None
            lin = lin_t.t()
            z = {r: h @ p for r, (p, _) in facs.items()}
            low = {r: z[r] @ q.t() for r, (_, q) in facs.items()}
            low2 = {r: z[r] @ qp.t() for r, qp in facs_p.items()}
            for t in sharpens:
                for r, a in combos:
                    s = lin + a * low[r] if r else lin.clone()
                    if t:
                        s -= t * (lin2 + a * low2[r] if r else lin2)
                    yield s

        seconds = self.run(configs, scores)
        ranked = [c for c in self.candidates if c["config"]["model"] == "gfcf" and c["config"]["rank"] > 0]
        if ranked:
            self.best_rank = max(ranked, key=lambda c: c[self.cfg.monitor])["config"]["rank"]
        return seconds

    def rk4_pass(self) -> float:
        r"""GF-CF sharpened by one Runge-Kutta step (order 4) over sharpening times x low-pass weights at the best
        GF-CF rank, from one pass: per block, :math:`\tilde{\mathbf{P}}^k` of the linear part for :math:`k \le 4`
        is computed once and every time :math:`T` mixes it with the Taylor weights :math:`(-T)^k / k!`."""
        order, rank = 4, self.best_rank
        times = sorted({t for t in self.cfg.rk4_sharpens if t > 0})
        alphas = sorted(set(self.cfg.alphas) | {0.0}) if rank else [0.0]
        configs = [
            filter_config("gfcf", alpha=a, rank=rank, sharpen=t, sharpen_order=order, neighbours_top_k=self.cfg.neighbours_top_k,
                          correction_rank=self.cfg.correction_rank)
            for t in times for a in alphas
        ]
        weights = {t: [(-t) ** k / math.factorial(k) for k in range(order + 1)] for t in times}
        p, q = self.factors(0.5, rank) if rank else (None, None)
        if q is not None:
            powers_q = [q]
            for _ in range(order):
                powers_q.append(self.graph.propagate_t(powers_q[-1]))
            sharp_q = {t: sum(c * x for c, x in zip(weights[t], powers_q)) for t in times}

        def scores(users: Tensor) -> Iterator[Tensor]:
            h = self.graph.history_rows(users)
            powers = [self.graph.propagate_t(h.to_dense().t().contiguous())]
            for _ in range(order):
                powers.append(self.graph.propagate_t(powers[-1]))
            z = h @ p if p is not None else None
            for t in times:
                lin = sum(c * x for c, x in zip(weights[t], powers)).t()
                low = z @ sharp_q[t].t() if z is not None else None
                for a in alphas:
                    yield lin + a * low if (low is not None and a) else lin.clone()

        return self.run(configs, scores)

    def chebycf_pass(self, order: int, power: float) -> float:
        rank = self.best_rank
        flats = list(self.cfg.flatnesses)
        alphas = sorted(set(self.cfg.alphas) | {0.0}) if rank else [0.0]
        configs = [
            filter_config("chebycf", order=order, flatness=f, alpha=a, rank=rank, power=power, neighbours_top_k=self.cfg.neighbours_top_k, correction_rank=self.cfg.correction_rank)
            for f in flats for a in alphas
        ]
        coeffs = torch.stack([chebyshev_coefficients(order, f) for f in flats]).float()
        d = self.graph.item_degree
        pre, post = degree_power(d, -power), degree_power(d, power)
        p, q = self.factors(power, rank) if rank else (None, None)

        def scores(users: Tensor) -> Iterator[Tensor]:
            h = self.graph.history_rows(users)
            xt = (h.to_dense() * pre).t().contiguous()
            outs = chebyshev_filter_t(self.graph, xt, coeffs)
            low = (h @ p) @ q.t() if p is not None else None
            for out in outs:
                lin = out.t() * post
                for a in alphas:
                    yield lin + a * low if (low is not None and a) else lin

        return self.run(configs, scores)

    def ease_pass(self, reg: float, gram: Tensor) -> float:
        config = filter_config("ease", reg=reg, max_bytes=self.cfg.ease_max_bytes, neighbours_top_k=self.cfg.neighbours_top_k, correction_rank=self.cfg.correction_rank)
        g = gram.clone()
        g.diagonal().add_(reg)
        p = torch.linalg.inv(g)
        del g
        p.div_(-p.diagonal().unsqueeze(0))
        p.diagonal().zero_()

        def scores(users: Tensor) -> Iterator[Tensor]:
            yield self.graph.history_rows(users) @ p

        return self.run([config], scores)


def select_filter(data: InteractionData, cfg: SelectionConfig | None = None, device: str | torch.device = "auto") -> SelectionResult:
    """Search the graph filters' settings on ``data``'s validation part (history: its training part).

    Raises:
        InvalidArgumentError: No validation part, unknown models or monitor.
    """
    cfg = cfg or SelectionConfig()
    if len(data.val) == 0:
        raise InvalidArgumentError("model selection needs a validation part; carve one with gnn.holdout.carve_validation")
    unknown = set(cfg.models) - {"gfcf", "chebycf", "ease"}
    if unknown or not cfg.models:
        raise InvalidArgumentError(f"unknown graph filters {sorted(unknown)}; use gfcf, chebycf, ease")
    if cfg.monitor not in ("ndcg@20", "recall@20"):
        raise InvalidArgumentError("monitor must be ndcg@20 or recall@20")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    search = _Search(data, cfg, dev)
    skipped: list[str] = []
    base_pass = None  # seconds of one filtering pass (one propagation per block)

    def left() -> float:
        return cfg.time_budget_s - (time.perf_counter() - t0)

    if "gfcf" in cfg.models:
        # plain GF-CF first; then, where sharpening is tried, the Runge-Kutta step at its best rank (on Gowalla the
        # better and the cheaper of the two), then the Euler steps over every rank
        sharpens = [t for t in cfg.sharpen_grid() if t > 0]
        base_pass = search.gfcf_pass([0.0])
        log.info("gfcf pass %.1f s", base_pass)
        if sharpens and cfg.rk4_sharpens:
            est = base_pass * 1.0  # five propagations per block for a dozen candidates; 0.8-1.2 plain passes on Gowalla
            if left() <= est and not cfg.rk4_always:
                skipped.append(f"gfcf Runge-Kutta sharpening: time budget ({left():.0f} s left, ~{est:.0f} s needed)")
            else:
                log.info("gfcf Runge-Kutta pass %.1f s", search.rk4_pass())
        if sharpens:
            est = base_pass * 3.0  # on Gowalla the Euler pass took 3.1-3.5 times the plain one
            if left() <= est:
                skipped.append(f"gfcf Euler sharpening {sharpens}: time budget ({left():.0f} s left, ~{est:.0f} s needed)")
            else:
                log.info("gfcf Euler sharpening pass %.1f s", search.gfcf_pass(sharpens))
    if "ease" in cfg.models:
        if ease_memory_bytes(data.num_items) > cfg.ease_max_bytes:
            skipped.append(f"ease: needs {ease_memory_bytes(data.num_items) / 1024**3:.1f} GiB > limit {cfg.ease_max_bytes / 1024**3:.1f} GiB")
        else:
            from gnn.filters.ease import _gram_cpu

            h = search.graph.history
            gram = torch.from_numpy(_gram_cpu(h.cpu())).to(dev) if dev.type == "cpu" else (h.t() @ h.to_dense())
            est = 0.0
            for reg in cfg.ease_regs:
                if left() <= est:
                    skipped.append(f"ease reg={reg}: time budget")
                    continue
                est = search.ease_pass(reg, gram)
            del gram
    if "chebycf" in cfg.models:
        for order in sorted(cfg.orders):
            for power in cfg.powers:
                est = (base_pass or 0.0) * max(order, 1) * 1.2
                if left() <= est:
                    skipped.append(f"chebycf order={order} power={power}: time budget ({left():.0f} s left, ~{est:.0f} s needed)")
                    continue
                seconds = search.chebycf_pass(order, power)
                base_pass = base_pass or seconds / max(order, 1)
    if not search.candidates:
        raise ModelError("no candidate was scored within the time budget")
    best = max(search.candidates, key=lambda c: c[cfg.monitor])
    settings = {k: v for k, v in best["config"].items() if k != "model"}
    serving = {"neighbours_top_k": cfg.neighbours_top_k, "correction_rank": cfg.correction_rank}
    chosen = filter_config(best["config"]["model"], **settings, **serving)
    if chosen.model == "ease":
        chosen = filter_config("ease", **{**settings, "max_bytes": cfg.ease_max_bytes}, **serving)
    return SelectionResult(
        config=chosen,
        val_metrics={k: best[k] for k in ("recall@20", "ndcg@20")},
        candidates=search.candidates,
        seconds=time.perf_counter() - t0,
        val_users=int(search.users.numel()),
        skipped=skipped,
    )


def fit_filter(config: FilterConfig, data: InteractionData, parts: tuple[str, ...] = ("train",), device: str | torch.device = "auto") -> GraphFilter:
    """Build ``config``'s model and fit it on the union of ``parts`` of ``data``.

    The model records the parts in ``fitted_parts`` (written to checkpoint metadata by the CLI).
    """
    parts = tuple(p for p in parts if len(data.part(p)) or p == "train")
    model = config.build(data.num_users, data.num_items).to(resolve_device(device))
    pairs = merge_parts(data, parts)
    model.set_interactions(pairs.users, pairs.items)
    model.fit()
    model.fitted_parts = parts
    return model


def fit_for_serving(data: InteractionData, config: FilterConfig, device: str | torch.device = "auto") -> GraphFilter:
    """Refit ``config`` on every interaction of ``data`` (train + val + test) for publishing.

    The returned model's ``fitted_parts`` lists the parts it saw; its :meth:`GraphFilter.live_form`
    is what serving stores.
    """
    return fit_filter(config, data, ALL_PARTS, device)


@dataclass
class AutoFit:
    """Outcome of :func:`auto_fit`: the refitted model, the selection and the data it used."""

    model: GraphFilter
    selection: SelectionResult
    data: InteractionData
    carved: bool
    fit_seconds: float


def auto_fit(data: InteractionData, cfg: SelectionConfig | None = None, device: str | torch.device = "auto") -> AutoFit:
    """Select on the validation part (carved from train when absent), then refit on train + val.

    The refit model saw exactly the training pairs of ``data`` plus its validation pairs; the
    test part is never used for a choice.
    """
    cfg = cfg or SelectionConfig()
    carved = len(data.val) == 0
    sel_data = carve_validation(data, cfg.val_fraction, cfg.seed) if carved else data
    selection = select_filter(sel_data, cfg, device)
    t0 = time.perf_counter()
    model = fit_filter(selection.config, sel_data, ("train", "val"), device)
    return AutoFit(model=model, selection=selection, data=sel_data, carved=carved, fit_seconds=time.perf_counter() - t0)


def checkpoint_extra(model: GraphFilter, config: FilterConfig, selection: SelectionResult | None = None, **more: Any) -> dict[str, Any]:
    """Checkpoint metadata of a fitted filter: the parts it was fitted on, its config, the selection."""
    out: dict[str, Any] = {
        "fitted_on": list(getattr(model, "fitted_parts", ("train",))),
        "filter_config": config.model_dump(),
        "neighbours_top_k": config.neighbours_top_k,
        **more,
    }
    if selection is not None:
        out["selection"] = {k: v for k, v in selection.to_json().items() if k != "candidates"}
        out["selection"]["candidates_scored"] = len(selection.candidates)
    return out


__all__ = [
    "ALL_PARTS", "AutoFit", "SelectionConfig", "SelectionResult", "auto_fit", "checkpoint_extra",
    "evaluate_candidates", "fit_filter", "fit_for_serving", "select_filter",
]
