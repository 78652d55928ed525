r"""The default served model: a graph filter fused with text neighbours and popularity, all live.

The fused score of a user with history :math:`\mathbf{h}` is one :class:`gnn.live.LiveForm`:

.. math::
    \mathbf{s}(\mathbf{h}) = \mathbf{h} \left(\mathbf{W}_{\mathrm{filter}}
      + \beta\, \sigma_{t}\, \mathbf{T}\right)
      + \alpha\, (\mathbf{h}\mathbf{P})\mathbf{Q}^{\top}
      + \gamma\, \sigma_{p}\, \lVert \mathbf{h} \rVert_1\, \mathbf{p}
      + \lambda\, \sigma_{g}\, (\mathbf{h}\mathbf{P}_{g})\mathbf{Q}_{g}^{\top}

where :math:`\mathbf{W}_{\mathrm{filter}}, \mathbf{P}, \mathbf{Q}, \alpha` come from the graph filter
(its own live form), :math:`\mathbf{T}` holds each item's ``text_top_k`` nearest items by the cosine
of their BERT text vectors, :math:`\mathbf{p} = \log(1 + n_i) / \max_j \log(1 + n_j)` is popularity,
and :math:`\sigma_t, \sigma_p` put both on the filter's scale (the mean nonzero weight of
:math:`\mathbf{W}_{\mathrm{filter}}` divided by the mean nonzero of :math:`\mathbf{T}`, and that mean
weight itself). The last term is LightGCN, when one was trained on the same training part
(:mod:`gnn.fusion.lightgcn_part`: :math:`\mathbf{P}_g, \mathbf{Q}_g` fold the user in from their
history's item embeddings); :math:`\sigma_g` puts it on the filter's scale (that mean weight over the
mean of each item's 20 strongest LightGCN weights :math:`\mathbf{p}_j^\top\mathbf{q}_i`). The relative
weights :math:`\beta, \gamma, \lambda` are chosen on the validation part by a small grid (text and
popularity first, then LightGCN, then popularity again); the fused form stays linear in the history
(the LightGCN factors join the filter's low-rank part), so serving computes it from the graph at
request time.

Because every term is a function of the history, the same code fits for evaluation (on the
training part, weights chosen on validation, then refitted on train + validation and scored on
test) and for serving (refitted on every interaction: :func:`fit_live_default`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel, Field

from gnn.data import InteractionData, SplitPart
from gnn.evaluate import Evaluator
from gnn.fusion.lightgcn_part import EmbeddingPart
from gnn.live import LiveForm, top_k_rows
from graphrec.errors import ModelError


class FusionGrid(BaseModel):
    """The validation grid of the fused live model's relative weights."""

    betas: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0],
                               description="Relative weights of the text neighbours (0 = none).")
    gammas: list[float] = Field(default_factory=lambda: [0.0, 0.03, 0.1, 0.3, 1.0, 3.0],
                                description="Relative weights of popularity (0 = none).")
    lambdas: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.3, 1.0, 3.0],
                                 description="Relative weights of the LightGCN part (0 = none); tried only when one is given.")
    max_users: int = Field(5000, ge=1, description="Validation users scored per grid point (a seeded sample when there are more).")
    metric: str = Field("ndcg@20", description="Validation metric the grid maximises.")
    seed: int = Field(0, description="Seed of the user sample.")


class FusionWeights(BaseModel):
    """Chosen relative weights and the scale factors that turn them into the form's weights."""

    beta: float = 0.0
    gamma: float = 0.0
    text_scale: float = 1.0
    pop_scale: float = 1.0
    lam: float = Field(0.0, description="Relative weight of the LightGCN part (0: none).")
    graph_scale: float = Field(1.0, description="Puts the LightGCN part on the filter's scale.")


def history_matrix(parts: Sequence[SplitPart], num_users: int, num_items: int) -> sp.csr_matrix:
    """Binary ``(num_users, num_items)`` history rows from split parts (duplicates counted once)."""
    users = np.concatenate([p.users.numpy() for p in parts]) if parts else np.zeros(0, np.int64)
    items = np.concatenate([p.items.numpy() for p in parts]) if parts else np.zeros(0, np.int64)
    h = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(num_users, num_items))
    h.sum_duplicates()
    h.data[:] = 1.0
    return h


def popularity(history: sp.csr_matrix) -> np.ndarray:
    r""":math:`\log(1 + n_i) / \max_j \log(1 + n_j)` from history rows (zeros for an empty history)."""
    counts = np.asarray(history.sum(axis=0), dtype=np.float64).reshape(-1)
    logc = np.log1p(counts)
    top = logc.max(initial=0.0)
    return (logc / top if top > 0 else logc).astype(np.float32)


def text_neighbours(vectors: np.ndarray, top_k: int, chunk: int = 2048) -> sp.csr_matrix:
    """Each item's ``top_k`` nearest other items by text cosine (positive cosines only).

    Args:
        vectors: ``(num_items, D)`` text vectors (rows of zeros for items without text).
        top_k: Neighbours kept per item.
        chunk: Items per dense ``chunk x num_items`` block.
    """
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    blocks = [top_k_rows(unit[s : s + chunk] @ unit.T, top_k, drop_diagonal_offset=s) for s in range(0, len(unit), chunk)]
    if not blocks:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    return sp.vstack(blocks, format="csr").astype(np.float32)


def _mean_nonzero(m: sp.csr_matrix) -> float:
    return float(np.abs(m.data).mean()) if m.nnz else 0.0


def fusion_scales(base: LiveForm, text: sp.csr_matrix | None) -> tuple[float, float]:
    """``(text_scale, pop_scale)``: the filter's mean nonzero weight over the text's, and that weight."""
    w = _mean_nonzero(base.neighbours)
    if w == 0.0:
        w = 1.0
    t = _mean_nonzero(text) if text is not None else 0.0
    return (w / t if t > 0 else 0.0), w


def graph_scale(base: LiveForm, part: EmbeddingPart, sample: int = 256, top: int = 20, seed: int = 0) -> float:
    r"""The filter's mean nonzero weight over the mean of the ``top`` strongest LightGCN weights of a
    seeded sample of items (:math:`\sigma_g` in the module docstring)."""
    w = _mean_nonzero(base.neighbours) or 1.0
    rows = np.flatnonzero(np.abs(part.in_factors).sum(axis=1) > 0)
    if not len(rows):
        return 0.0
    rows = np.random.default_rng(seed).choice(rows, size=min(sample, len(rows)), replace=False)
    block = part.in_factors[rows] @ part.out_factors.T
    k = min(top, block.shape[1])
    strongest = np.partition(block, block.shape[1] - k, axis=1)[:, -k:]
    m = float(np.abs(strongest).mean())
    return w / m if m > 0 else 0.0


def combine(base: LiveForm, text: sp.csr_matrix | None, pop: np.ndarray | None, weights: FusionWeights,
            graph: EmbeddingPart | None = None) -> LiveForm:
    """The fused live form of ``base`` with text neighbours, popularity and the LightGCN part ``graph``
    (see the module docstring). The LightGCN factors are appended to the filter's low-rank part."""
    neighbours = base.neighbours
    if text is not None and weights.beta > 0:
        if text.shape != neighbours.shape:
            raise ModelError(f"text neighbours {text.shape} do not match the filter {neighbours.shape}")
        neighbours = (neighbours + (weights.beta * weights.text_scale) * text).tocsr().astype(np.float32)
        neighbours.eliminate_zeros()
    gamma = weights.gamma * weights.pop_scale if pop is not None else 0.0
    pin, qout, alpha = base.in_factors, base.out_factors, base.alpha
    lam = weights.lam * weights.graph_scale if graph is not None else 0.0
    if lam > 0:
        assert graph is not None
        if graph.num_items != neighbours.shape[0]:
            raise ModelError(f"the LightGCN part has {graph.num_items} items, the filter {neighbours.shape[0]}")
        if pin is None or qout is None or alpha == 0.0:
            pin, qout, alpha = graph.in_factors, graph.out_factors, lam
        else:
            pin = np.hstack([pin, (lam / alpha) * graph.in_factors]).astype(np.float32)
            qout = np.hstack([qout, graph.out_factors]).astype(np.float32)
    return LiveForm(neighbours=neighbours, in_factors=pin, out_factors=qout, alpha=alpha,
                    popularity=pop if gamma > 0 else None, gamma=float(gamma))


def live_scorer(form: LiveForm, history: sp.csr_matrix) -> Callable[[torch.Tensor], torch.Tensor]:
    """An :class:`gnn.evaluate.Evaluator` scorer: the form's scores of the users' history rows."""

    def score(users: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(form.scores(history[users.cpu().numpy()]))

    return score


def _sampled_evaluator(data: InteractionData, part: str, max_users: int, seed: int) -> Evaluator:
    ev = Evaluator(data, part=part, ks=(20,), metrics=("recall", "ndcg"), device="cpu")
    if ev.users.numel() > max_users:
        g = torch.Generator().manual_seed(seed)
        ev.users = ev.users[torch.randperm(ev.users.numel(), generator=g)[:max_users]].sort().values
    return ev


def select_fusion(
    base: LiveForm, text: sp.csr_matrix | None, data: InteractionData, grid: FusionGrid | None = None,
    graph: EmbeddingPart | None = None,
) -> tuple[FusionWeights, dict[str, float], list[dict[str, float]]]:
    """Choose ``beta``, ``gamma`` and (with ``graph``) ``lam`` on the validation part (history: the training part).

    ``base`` and ``graph`` must be fitted on the training part only. ``beta`` and ``gamma`` come from
    their grid first; then ``lam`` with them fixed; when LightGCN joins, ``gamma`` once more.

    Returns:
        ``(weights, best validation metrics, every grid point with its metrics)``.

    Raises:
        ModelError: ``data`` has no validation part.
    """
    grid = grid or FusionGrid()
    if len(data.val) == 0:
        raise ModelError("fusion weights are chosen on a validation part; this data has none (carve one first)")
    history = history_matrix([data.train], data.num_users, data.num_items)
    pop = popularity(history)
    text_scale, pop_scale = fusion_scales(base, text)
    g_scale = graph_scale(base, graph) if graph is not None else 1.0
    betas = grid.betas if text is not None and text.nnz else [0.0]
    ev = _sampled_evaluator(data, "val", grid.max_users, grid.seed)
    trials: list[dict[str, float]] = []
    best: tuple[float, FusionWeights, dict[str, float]] | None = None
    tried: set[tuple[float, float, float]] = set()

    def trial(w: FusionWeights) -> None:
        nonlocal best
        key = (w.beta, w.gamma, w.lam)
        if key in tried:
            return
        tried.add(key)
        metrics = ev.evaluate(live_scorer(combine(base, text, pop, w, graph), history)).metrics
        trials.append({"beta": w.beta, "gamma": w.gamma, "lam": w.lam, "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"]})
        if best is None or metrics[grid.metric] > best[0] + 1e-12:
            best = (metrics[grid.metric], w, metrics)

    for beta, gamma in itertools.product(betas, grid.gammas):
        trial(FusionWeights(beta=beta, gamma=gamma, text_scale=text_scale, pop_scale=pop_scale, graph_scale=g_scale))
    if graph is not None and g_scale > 0:
        assert best is not None
        for lam in grid.lambdas:
            trial(best[1].model_copy(update={"lam": lam}))
        if best[1].lam > 0:
            for gamma in grid.gammas:
                trial(best[1].model_copy(update={"gamma": gamma}))
    assert best is not None
    return best[1], {k: best[2][k] for k in ("recall@20", "ndcg@20")}, trials


FilterFit = Callable[[InteractionData, Sequence[str]], LiveForm]
"""``(data, parts) -> LiveForm``: fit the graph filter on the named split parts (its settings fixed)."""


class LiveFitReport(BaseModel):
    """What :func:`fit_live_default` chose and measured; the served form is fitted on ``served_on``."""

    weights: FusionWeights
    val_metrics: dict[str, float] = Field(description="Validation metrics of the chosen weights (filter fitted on train).")
    test_metrics: dict[str, float] = Field(default_factory=dict, description="Test metrics of a refit on train + validation.")
    grid: list[dict[str, float]] = Field(default_factory=list)
    served_on: list[str] = Field(description="Split parts the served form was fitted on.")
    graph_served_on: list[str] = Field(default_factory=list, description="Split parts the served LightGCN part was trained on "
                                       "(empty: no LightGCN).")
    seconds: dict[str, float] = Field(default_factory=dict)


def fit_live_default(
    data: InteractionData,
    fit_filter: FilterFit,
    text_vectors: np.ndarray | None,
    *,
    text_top_k: int = 20,
    grid: FusionGrid | None = None,
    evaluate_test: bool = True,
    serve_on: Sequence[str] | None = ("train", "val", "test"),
    test_curve: bool = False,
    graph: EmbeddingPart | None = None,
    refit_graph: Callable[[Sequence[str]], EmbeddingPart] | None = None,
) -> tuple[LiveForm | None, LiveFitReport]:
    """Choose the fusion weights on validation, report test, and fit the served form on ``serve_on``.

    Args:
        data: Interactions with train / val / test parts (carve a validation part first when the
            split has none).
        fit_filter: Fits the graph filter (settings already chosen) on the named parts.
        text_vectors: ``(num_items, D)`` item text vectors, or ``None`` (no content term).
        text_top_k: Text neighbours per item.
        grid: The validation grid.
        evaluate_test: Also refit on train + val and evaluate on test (skipped when there is no test part).
        serve_on: Parts the served form is fitted on (default: all of them; ``None``: no served form).
        test_curve: Also score every grid point on the test part (the literature's protocol, selection
            on the test curve; reported as ``test_curve_best``, never used to choose).
        graph: The LightGCN part (:mod:`gnn.fusion.lightgcn_part`) of a LightGCN trained on the
            training part (its epochs chosen on the validation part); ``None``: no LightGCN. It is
            also used for the test number (LightGCN is not retrained on train + validation).
        refit_graph: Retrains the LightGCN on the named parts and returns its part
            (:func:`gnn.fusion.lightgcn_refit.refit_lightgcn`); called for the served form only when
            LightGCN gets a weight. ``None``: the served form uses ``graph`` (trained on the training part).
    """
    t0 = time.perf_counter()
    text = text_neighbours(text_vectors, text_top_k) if text_vectors is not None and len(text_vectors) else None
    t_text = time.perf_counter()
    base_train = fit_filter(data, ("train",))
    weights, val_metrics, trials = select_fusion(base_train, text, data, grid, graph)
    t_select = time.perf_counter()
    test_metrics: dict[str, float] = {}
    if evaluate_test and len(data.test):
        base_tv = fit_filter(data, ("train", "val"))
        h_tv = history_matrix([data.train, data.val], data.num_users, data.num_items)
        form_tv = combine(base_tv, text, popularity(h_tv), weights, graph)
        test_ev = Evaluator(data, part="test", ks=(20,), metrics=("recall", "ndcg"), device="cpu")
        m = test_ev.evaluate(live_scorer(form_tv, h_tv)).metrics
        test_metrics = {k: m[k] for k in ("recall@20", "ndcg@20")}
        if test_curve:
            curve = []
            for t in trials:
                w = weights.model_copy(update={"beta": t["beta"], "gamma": t["gamma"], "lam": t["lam"]})
                mm = test_ev.evaluate(live_scorer(combine(base_tv, text, popularity(h_tv), w, graph), h_tv)).metrics
                curve.append({"beta": t["beta"], "gamma": t["gamma"], "lam": t["lam"], "recall@20": mm["recall@20"], "ndcg@20": mm["ndcg@20"]})
            best = max(curve, key=lambda c: c["ndcg@20"])
            test_metrics.update({"test_curve_best_recall@20": best["recall@20"], "test_curve_best_ndcg@20": best["ndcg@20"],
                                 "test_curve_best_beta": best["beta"], "test_curve_best_gamma": best["gamma"],
                                 "test_curve_best_lam": best["lam"]})
    t_test = time.perf_counter()
    served: LiveForm | None = None
    parts: list[str] = []
    graph_served_on = ["train"] if graph is not None else []
    if serve_on is not None:
        parts = [p for p in serve_on if len(data.part(p))]
        base_all = fit_filter(data, tuple(parts))
        h_all = history_matrix([data.part(p) for p in parts], data.num_users, data.num_items)
        served_graph = graph
        if graph is not None and weights.lam > 0 and refit_graph is not None:
            served_graph = refit_graph(tuple(parts))
            graph_served_on = list(parts)
        served = combine(base_all, text, popularity(h_all), weights, served_graph)
    t_end = time.perf_counter()
    report = LiveFitReport(
        weights=weights, val_metrics=val_metrics, test_metrics=test_metrics, grid=trials, served_on=parts, graph_served_on=graph_served_on,
        seconds={"text_neighbours": round(t_text - t0, 2), "select": round(t_select - t_text, 2), "test": round(t_test - t_select, 2),
                 "serve_fit": round(t_end - t_test, 2), "total": round(t_end - t0, 2)},
    )
    return served, report


__all__ = [
    "FilterFit", "FusionGrid", "FusionWeights", "LiveFitReport", "combine", "fit_live_default", "fusion_scales", "graph_scale", "history_matrix",
    "live_scorer", "popularity", "select_fusion", "text_neighbours",
]
