"""Draw a seeded, label-balanced, nested training sample of size n (rule data_train_sample)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.text.data import sample_train

log = logging.getLogger("kernelft.data_train_sample")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    n, seed = int(snakemake.wildcards.n), int(snakemake.wildcards.seed)
    pool = pd.read_parquet(snakemake.input.pool)
    train = sample_train(pool, n, seed, snakemake.params.num_classes)
    train.to_parquet(snakemake.output.train, index=False)
    write_metadata(snakemake.output.train, {"n": n, "num_classes": snakemake.params.num_classes}, seed=seed)
    log.info("sampled n=%d (seed %d) from a pool of %d", n, seed, len(pool))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
