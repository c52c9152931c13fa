"""Build a task's fixed test set and training pool (rule data_task)."""

import logging

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.text.data import TaskSpec, load_task, split_test

log = logging.getLogger("kernelft.data_task")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    spec = TaskSpec.from_params(snakemake.params.task)
    table = load_task(spec)
    test, pool = split_test(table, snakemake.params.test_size, snakemake.params.seed)
    log.info(
        "task %s: %d examples, test %d, pool %d; labels in pool %s",
        spec.name,
        len(table),
        len(test),
        len(pool),
        pool["label"].value_counts().sort_index().to_dict(),
    )
    for frame, path in ((test, snakemake.output.test), (pool, snakemake.output.pool)):
        frame.to_parquet(path, index=False)
        write_metadata(
            path,
            {"task": snakemake.params.task, "test_size": snakemake.params.test_size},
            seed=snakemake.params.seed,
            rows=len(frame),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
