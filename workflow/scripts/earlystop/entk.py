"""eNTK of a seeded, label-balanced pool of training examples for the early-stopping stage (rule earlystop_entk).

The test examples of the rate study are drawn inside this pool by kernelft.earlystop.rates.sweep_sizes, so
one N x N kernel serves every size and repetition.
"""

import logging

import numpy as np
import pandas as pd
import torch

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.earlystop.study import pool_targets
from kernelft.entk import check_finite, empirical_ntk_fn
from kernelft.text.data import sample_train
from kernelft.text.experiment import build_model, encode_frame

log = logging.getLogger("kernelft.earlystop_entk")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    pool_size = int(params.pool_size)
    frame = sample_train(pd.read_parquet(snakemake.input.pool), pool_size, params.seed, len(params.task["labels"]))
    model, tokenizer, head = build_model(params.model, params.task, seed=params.seed)
    batch, labels = encode_frame(frame, tokenizer, head, params.model["max_length"])
    ntk = empirical_ntk_fn(model, kind=params.entk["kind"], max_memory_gb=params.entk["max_memory_gb"])
    kernel = check_finite(ntk(batch), f"pool eNTK of {snakemake.output.kernel}")
    if kernel.shape != (pool_size, pool_size):
        raise ValueError(f"pool eNTK of {snakemake.output.kernel}: shape {kernel.shape}, "
                         f"expected ({pool_size}, {pool_size})")
    with torch.no_grad():
        logits = model(**batch).cpu().numpy()
    y, f_init = pool_targets(labels.numpy(), logits)
    np.savez(snakemake.output.kernel, kernel=kernel, y=y, f_init=f_init, labels=labels.numpy())
    frame.to_parquet(snakemake.output.sample, index=False)
    write_metadata(snakemake.output.kernel, {"model": params.model, "task": params.task, "entk": params.entk,
                                             "pool_size": pool_size}, seed=params.seed)
    log.info("pool eNTK %s: %s; f_init mean %.3g sd %.3g; labels +1 share %.2f", snakemake.output.kernel,
             kernel.shape, f_init.mean(), f_init.std(), (y > 0).mean())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
