"""The eNTK of a GPT-Neo-125M-shaped decoder (random weights from its config, nothing downloaded).

EleutherAI/gpt-neo-125m's architecture: 12 layers of width 768 (12 heads, MLP 3072), global and local
(window 256) attention alternating, vocabulary 50,257 tied to the LM head, 125M parameters. The model
is its ``GPTNeoForCausalLM`` with random weights and the prompt head (next-token logits of two label
words at the last real token, f = logit_1 − logit_0), on random token ids of ``--length`` tokens
(right-padded rows of different lengths).

Prints one JSON line per case on stdout, each run in a fresh child process so that ``peak_rss_gb``
(VmHWM) is its own: ``case``, ``n``, ``length``, ``dtype``, ``projection``, ``d``, ``seconds`` (the
kernel call, after a warm-up on 2 examples), ``collect_s``/``product_s``/``groups`` (the hook engine's
split), ``implementation``, ``peak_rss_gb``, ``model_rss_gb`` and, for projections at the exact
case's n, ``rel_err`` (‖K̃ − K‖_F / ‖K‖_F against the exact kernel of the same batch).

    python benchmarks/entk_decoder.py                          # exact n = 32, factored n = 256, errors vs d
    python benchmarks/entk_decoder.py --dtype bfloat16 --device cuda   # on a GPU
    python benchmarks/entk_decoder.py --cases exact            # one case
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time

import numpy as np
import torch
from entk import rss_gb

from kernelft.entk import empirical_ntk_fn, relative_error
from kernelft.text.models import LabelWordHead, TextClassifier

LABEL_IDS = [7818, 1049]
"""GPT-2 BPE ids of " terrible" and " great" (any two ids would do with random weights)."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gpt_neo_125m(dtype: torch.dtype, device: str) -> TextClassifier:
    """A random GPT-Neo-125M (its published config) with the prompt head, in eval mode."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    config = GPTNeoConfig(
        vocab_size=50257,
        max_position_embeddings=2048,
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        attention_types=[[["global", "local"], 6]],
        window_size=256,
        activation_function="gelu_new",
        bos_token_id=50256,
        eos_token_id=50256,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    backbone = GPTNeoForCausalLM(config)
    model = TextClassifier(backbone, LabelWordHead(LABEL_IDS), read="last", causal=True, additive_mask=False)
    return model.to(dtype=dtype, device=device).eval()


def random_batch(n: int, length: int) -> dict[str, torch.Tensor]:
    """Seeded random ids; row i keeps length − (i mod 4) real tokens (right padding)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50256, (n, length), generator=generator)
    mask = torch.ones(n, length, dtype=torch.long)
    for row in range(n):
        mask[row, length - row % 4 :] = 0
    return {"input_ids": ids.masked_fill(mask == 0, 50256), "attention_mask": mask}


def _child(queue, case, n, length, dtype, device, budget, threads, projection, d):
    torch.set_num_threads(threads)
    model = gpt_neo_125m(DTYPES[dtype], device)
    batch = random_batch(n, length)
    model_rss = rss_gb()
    options = {} if projection is None else {"projection": projection, "projection_dim": d}
    ntk = empirical_ntk_fn(model, max_memory_gb=budget, show_progress=False, **options)
    ntk({key: value[:2] for key, value in batch.items()})  # warm-up
    start = time.perf_counter()
    kernel = ntk(batch)
    seconds = time.perf_counter() - start
    queue.put((kernel, seconds, dict(ntk.stats), rss_gb(), model_rss))


def run(case, n, length, dtype, device, budget, threads, projection=None, d=None) -> tuple[dict, np.ndarray]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (queue, case, n, length, dtype, device, budget, threads, projection, d)
    child = ctx.Process(target=_child, args=args)
    child.start()
    kernel, seconds, stats, peak, model_rss = queue.get()
    child.join()
    row = {"case": case, "n": n, "length": length, "dtype": dtype, "projection": projection, "d": d,
           "budget_gb": budget, "seconds": round(seconds, 2)}
    row.update({k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()})
    row.update(peak_rss_gb=round(peak, 2), model_rss_gb=round(model_rss, 2))
    return row, kernel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["exact", "errors", "factored"],
                        choices=["exact", "errors", "factored"],
                        help="exact: the exact kernel at --n-exact; errors: factored and CountSketch at the "
                        "same n against it, for each --dims; factored: the factored kernel at --n-factored")
    parser.add_argument("--n-exact", type=int, default=32)
    parser.add_argument("--n-factored", type=int, default=256)
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--d-factored", type=int, default=1024)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget-gb", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    common = (args.length, args.dtype, args.device, args.budget_gb, args.threads)
    exact = None
    if "exact" in args.cases or "errors" in args.cases:
        row, exact = run("exact", args.n_exact, *common)
        print(json.dumps(row), flush=True)
    if "errors" in args.cases:
        for d in args.dims:
            for projection in ("factored", "countsketch"):
                row, kernel = run("errors", args.n_exact, *common, projection=projection, d=d)
                row["rel_err"] = round(relative_error(kernel, exact), 4)
                print(json.dumps(row), flush=True)
    if "factored" in args.cases:
        row, _ = run("factored", args.n_factored, *common, projection="factored", d=args.d_factored)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
