"""One block K[rows, cols] of the eNTK of the pretrained model (rule entk_block).

``part`` train: rows and cols index the training sample; ``part`` test: rows index the test set,
cols the training sample. Blocks follow ``kernelft.entk.blocks.block_ranges(.., entk.block_size)``.
"""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.entk import empirical_ntk_fn
from kernelft.entk.blocks import block_ranges, compute_block, save_block
from kernelft.text.experiment import build_model, encode_frame, limit_threads

log = logging.getLogger("kernelft.entk_block")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, wildcards = snakemake.params, snakemake.wildcards
    model, tokenizer, head = build_model(params.model, params.task, seed=params.seed)
    max_length = params.model["max_length"]
    train, _ = encode_frame(pd.read_parquet(snakemake.input.train), tokenizer, head, max_length)
    rows_batch = train
    if wildcards.part == "test":
        rows_batch, _ = encode_frame(pd.read_parquet(snakemake.input.test), tokenizer, head, max_length)
    size = params.entk["block_size"]
    rows = block_ranges(len(rows_batch["input_ids"]), size)[int(wildcards.i)]
    cols = block_ranges(len(train["input_ids"]), size)[int(wildcards.j)]
    ntk = empirical_ntk_fn(model, kind=params.entk["kind"], max_memory_gb=params.entk["max_memory_gb"])
    cross = None if wildcards.part == "train" else train
    block = compute_block(ntk, rows_batch, rows, cols, batch2=cross)
    save_block(snakemake.output.block, block, rows, cols, params.entk["kind"])
    log.info("eNTK block %s rows %s cols %s", wildcards.part, rows, cols)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
