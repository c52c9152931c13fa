"""Random projections of the eNTK: error against d, time and peak memory, on the packaged MiniLM.

Prints one JSON line per case on stdout: ``projection`` ("exact", "countsketch" or "factored"),
``d`` (``projection_dim``), ``n``, ``params``, ``rel_err`` (‖K̃ − K‖_F / ‖K‖_F against the exact
kernel of the same batch, seed 0; with ``--seeds S`` also ``rel_err_mean`` and ``rel_err_std`` over
seeds 0..S-1), ``seconds`` (the kernel call, after a warm-up call on 4 examples), ``peak_rss_gb``
(VmHWM of the child process that ran it) and ``model_rss_gb`` (before the call), ``projected_numel`` (numbers kept
per example and output for the projected parameters: d for CountSketch over all of them; Σ k_out k_in
over the Linear weights for factored) and ``exact_numel`` (parameters whose contribution stays exact:
0 for CountSketch; biases, norms and embeddings for factored).

    python benchmarks/projection.py                       # n = 32, d in {64, 256, 1024, 4096}, ~2.5 min
    python benchmarks/projection.py --seeds 4 --projections factored
    python benchmarks/projection.py --params no_embeddings --n 64

CountSketch (:mod:`kernelft.entk.projection`) forms every per-example gradient and hashes it;
factored (:mod:`kernelft.entk.factored`, LoGra) projects each Linear layer's activations and output
gradients and never forms its weight gradient.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time

import numpy as np
import torch
from entk import HEAD, make_batch, rss_gb

from kernelft.entk import empirical_ntk_fn, parse_params, relative_error, select_parameters
from kernelft.entk.factored import FactoredProjection, linear_weight_shapes
from kernelft.text.checkpoints import PACKAGED_MODEL
from kernelft.text.models import load_classifier


def _child(queue, projection, d, n, length, params, budget, threads, seeds):
    torch.set_num_threads(threads)
    model = load_classifier(PACKAGED_MODEL, HEAD)
    batch = make_batch(n, length)
    model_rss = rss_gb()
    options = {} if projection == "exact" else {"projection": projection, "projection_dim": d}
    kernels = []
    for seed in range(1 if projection == "exact" else seeds):
        ntk = empirical_ntk_fn(model, params=params, max_memory_gb=budget, show_progress=False, seed=seed, **options)
        if seed == 0:
            ntk({key: value[:4] for key, value in batch.items()})  # warm-up
            start = time.perf_counter()
        kernels.append(ntk(batch))
        if seed == 0:
            seconds = time.perf_counter() - start
    queue.put((kernels, seconds, rss_gb(), model_rss))


def run(projection, d, n, length, params, budget, threads, seeds):
    """The kernels of one case (one per seed) in a fresh child process, so its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue, projection, d, n, length, params, budget, threads, seeds))
    child.start()
    result = queue.get()
    child.join()
    return result


def numels(projection: str, d: int | None, params) -> tuple[int, int]:
    """(projected_numel, exact_numel) of a case (see the module docstring)."""
    model = load_classifier(PACKAGED_MODEL, HEAD)
    chosen = select_parameters(model, params)
    total = sum(p.numel() for p in chosen.values())
    if projection == "exact":
        return 0, total
    if projection == "countsketch":
        return d, 0
    shapes = linear_weight_shapes(model, chosen)
    linear = sum(chosen[name].numel() for name in shapes)
    return FactoredProjection(d, 0, shapes).numel(), total - linear


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--projections", nargs="+", default=["countsketch", "factored"])
    parser.add_argument("--params", default="all", help="all, no_embeddings, lora, last_layers:<L>")
    parser.add_argument("--budget-gb", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1, help="projection seeds per case (time and memory: seed 0)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = parse_params(args.params)
    common = (args.n, args.length, params, args.budget_gb, args.threads, args.seeds)
    cases = [("exact", None)] + [(p, d) for p in args.projections for d in args.dims]
    exact = None
    for projection, d in cases:
        kernels, seconds, peak, model_rss = run(projection, d, *common)
        exact = kernels[0] if exact is None else exact
        errors = [relative_error(kernel, exact) for kernel in kernels]
        projected, kept = numels(projection, d, params)
        row = {"projection": projection, "d": d, "n": args.n, "params": str(params), "rel_err": errors[0]}
        if len(errors) > 1:
            row.update(rel_err_mean=float(np.mean(errors)), rel_err_std=float(np.std(errors)))
        row.update(seconds=round(seconds, 3), peak_rss_gb=round(peak, 3))
        row.update(model_rss_gb=round(model_rss, 3), projected_numel=projected, exact_numel=kept)
        print(json.dumps(row), flush=True)
    assert np.isfinite(exact).all()


if __name__ == "__main__":
    main(sys.argv[1:])
