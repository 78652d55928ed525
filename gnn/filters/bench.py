"""The graph-filter benchmark behind ``graphrec bench train --model gfcf|chebycf|ease|auto``.

One run fits a filter, evaluates the test part with the exact item-item part ("full"), then cuts
it to ``neighbours_top_k`` neighbours per item and evaluates again ("truncated": what serving
serves). Protocols:

- ``fixed`` (``--model gfcf|chebycf|ease``): the model's default settings (plus overrides), fitted
  on the training part; no choice is made on any held-out data.
- ``validation`` (``--model auto``): settings chosen on a validation part carved out of the
  training part (:func:`gnn.holdout.carve_validation` when the data has none), then refitted on
  train + val and evaluated once on test.
- ``test-selection`` (``--model auto --select-on test``): the literature's protocol, settings
  chosen on the test part itself; reported for comparison with published tables only.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from graphrec.errors import InvalidArgumentError
from gnn.data import InteractionData
from gnn.evaluate import Evaluator, resolve_device
from gnn.filters.base import GraphFilter
from gnn.filters.config import FILTER_CONFIGS, FilterConfig, filter_config
from gnn.filters.selection import SelectionConfig, SelectionResult, auto_fit, fit_filter, select_filter

FILTER_MODELS: tuple[str, ...] = (*FILTER_CONFIGS, "auto")
"""Model names the filter benchmark accepts."""


def _evaluate(model: GraphFilter, evaluator: Evaluator) -> dict[str, Any]:
    res = evaluator.evaluate(model)
    return {"recall@20": res["recall@20"], "ndcg@20": res["ndcg@20"], "eval_seconds": round(res.seconds, 2), "users": res.num_users}


def run_filter_bench(
    data: InteractionData,
    model: str,
    *,
    overrides: dict[str, Any] | None = None,
    selection: SelectionConfig | None = None,
    select_on: str = "val",
    device: str = "auto",
    batch_users: int = 2048,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit, evaluate full and truncated, and return the ``bench_train.json`` record.

    Args:
        data: Interactions with a test part (a validation part is carved for ``auto`` if absent).
        model: ``gfcf``, ``chebycf``, ``ease`` or ``auto``.
        overrides: Settings of a single filter (ignored by ``auto``).
        selection: Search settings of ``auto``.
        select_on: ``val`` (honest) or ``test`` (the literature's protocol, labelled as such).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_users: Users per evaluation block.
        echo: Where progress lines go.
    """
    if model not in FILTER_MODELS:
        raise InvalidArgumentError(f"unknown graph filter {model!r}; use one of {list(FILTER_MODELS)}")
    if select_on not in ("val", "test"):
        raise InvalidArgumentError("select_on must be val or test")
    dev = resolve_device(device)
    sel_cfg = selection or SelectionConfig()
    top_k = sel_cfg.neighbours_top_k if model == "auto" else filter_config(model, **(overrides or {})).neighbours_top_k
    record: dict[str, Any] = {"model": model, "device": str(dev), "torch_threads": torch.get_num_threads(),
                              "cpu": platform.processor() or platform.machine()}
    started = time.perf_counter()
    chosen: SelectionResult | None = None
    if model == "auto" and select_on == "test":
        record["protocol"] = "test-selection (literature protocol: settings chosen on the test part; not an honest estimate)"
        probe = dataclasses.replace(data, val=data.test)
        chosen = select_filter(probe, sel_cfg, dev)
        config: FilterConfig = chosen.config
        eval_data = data
        t0 = time.perf_counter()
        net = fit_filter(config.model_copy(update={"neighbours_top_k": None}), data, ("train",), dev)
        fit_s = time.perf_counter() - t0
    elif model == "auto":
        record["protocol"] = "validation (settings chosen on a validation part carved from the training part, refitted on train + val)"
        fitted = auto_fit(data, sel_cfg.model_copy(update={"neighbours_top_k": None}), dev)
        chosen, net, eval_data, fit_s = fitted.selection, fitted.model, fitted.data, fitted.fit_seconds
        config = chosen.config.model_copy(update={"neighbours_top_k": top_k})
        record["validation_carved"] = fitted.carved
    else:
        record["protocol"] = ("fixed (default settings plus the given overrides, no selection)" if overrides
                              else "fixed (default settings, no selection)")
        config = filter_config(model, **(overrides or {}))
        eval_data = data
        t0 = time.perf_counter()
        net = fit_filter(config.model_copy(update={"neighbours_top_k": None}), data, ("train",), dev)
        fit_s = time.perf_counter() - t0
    if chosen is not None:
        echo(f"selected {chosen.config.model_dump(exclude={'batch_users', 'neighbours_top_k'})} in {chosen.seconds:.1f} s "
             f"({len(chosen.candidates)} candidates on {chosen.val_users} users): val {chosen.val_metrics}")
        for s in chosen.skipped:
            echo(f"  skipped {s}")
    echo(f"fitted {config.model} on {list(net.fitted_parts)} in {fit_s:.1f} s")
    evaluator = Evaluator(eval_data, "test", ks=[20], metrics=("recall", "ndcg"), batch_users=batch_users, device=dev)
    full = _evaluate(net, evaluator)
    echo(f"full item-item part: recall@20 {full['recall@20']:.4f}  ndcg@20 {full['ndcg@20']:.4f}  eval {full['eval_seconds']:.1f} s")
    truncated = None
    nb_s = None
    if top_k is not None:
        t0 = time.perf_counter()
        net.truncate(top_k)
        nb_s = time.perf_counter() - t0
        truncated = _evaluate(net, evaluator)
        echo(f"top-{top_k} neighbours ({nb_s:.1f} s): recall@20 {truncated['recall@20']:.4f}  ndcg@20 {truncated['ndcg@20']:.4f}  "
             f"eval {truncated['eval_seconds']:.1f} s")
    record.update(
        config=config.model_dump(),
        fitted_on=list(net.fitted_parts),
        fit_seconds=round(fit_s, 2),
        eval_seconds=full["eval_seconds"],
        fit_plus_eval_seconds=round(fit_s + full["eval_seconds"], 2),
        neighbours_seconds=None if nb_s is None else round(nb_s, 2),
        best={"recall@20": full["recall@20"], "ndcg@20": full["ndcg@20"], "item_item": "full"},
        full=full,
        truncated=truncated,
        selection=None if chosen is None else chosen.to_json(),
        total_seconds=round(time.perf_counter() - started, 2),
        gpu=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        note="timings on a shared 2-core machine (other jobs ran beside this one) unless stated otherwise",
    )
    return record
