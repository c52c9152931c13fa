"""One block K[rows, cols] of the eNTK of the pretrained model (rule entk_block).

``part`` train: rows and cols index the training sample; ``part`` test: rows index the first
``params.test_rows`` examples of the test set (``entk.test_size``), cols the training sample. Blocks
follow ``kernelft.entk.blocks.block_ranges(.., entk.block_size)``.
"""

import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.threads import limit_threads
from kernelft.entk.blocks import block_ranges, save_block
from kernelft.entk.texts import text_kernel

log = logging.getLogger("kernelft.entk_block")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, wildcards = snakemake.params, snakemake.wildcards
    train = pd.read_parquet(snakemake.input.train)
    rows_frame, cols_frame = train, None  # part train: K(train, train)
    if wildcards.part == "test":
        rows_frame, cols_frame = pd.read_parquet(snakemake.input.test).head(params.test_rows), train
    size = params.entk["block_size"]
    row_blocks = block_ranges(len(rows_frame), size)
    cols = block_ranges(len(train), size)[int(wildcards.j)]
    if int(wildcards.i) >= len(row_blocks):
        # The plan counts data.test_size test rows; a task's own test split may hold fewer (SST-2: 872).
        rows, block = (len(rows_frame), len(rows_frame)), np.zeros((0, 0))
    else:
        rows = row_blocks[int(wildcards.i)]
        block = text_kernel(params.model, params.task, params.entk, rows_frame, cols_frame, seed=params.seed,
                            rows=rows, cols=cols)
    save_block(snakemake.output.block, block, rows, cols, params.entk["kind"])
    log.info("eNTK block %s rows %s cols %s", wildcards.part, rows, cols)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
