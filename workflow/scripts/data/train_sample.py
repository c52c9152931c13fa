"""Draw a seeded, label-balanced, nested training sample of size n (rule data_train_sample), or the
k-shot dev set beside it (rule data_dev_sample: the output is named dev)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.text.data import sample_dev, sample_train

log = logging.getLogger("kernelft.data_train_sample")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    n, seed = int(snakemake.wildcards.n), int(snakemake.wildcards.seed)
    pool = pd.read_parquet(snakemake.input.pool)
    dev = hasattr(snakemake.output, "dev")
    path = snakemake.output.dev if dev else snakemake.output.train
    draw = sample_dev if dev else sample_train
    sample = draw(pool, n, seed, snakemake.params.num_classes)
    sample.to_parquet(path, index=False)
    write_metadata(path, {"n": n, "num_classes": snakemake.params.num_classes, "dev": dev}, seed=seed)
    log.info("sampled %s n=%d (seed %d) from a pool of %d", "dev" if dev else "train", n, seed, len(pool))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
