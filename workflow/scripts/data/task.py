"""Build a task's fixed test set and training pool (rule data_task)."""

import logging

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.text.data import TaskSpec, task_splits

log = logging.getLogger("kernelft.data_task")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    spec = TaskSpec.from_params(snakemake.params.task)
    test, pool = task_splits(spec, snakemake.params.test_size, snakemake.params.seed)
    log.info(
        "task %s: test %d (%s), pool %d; labels in test %s, in pool %s",
        spec.name,
        len(test),
        f"split {spec.test_split or spec.test_path}" if spec.has_test_split else "balanced",
        len(pool),
        test["label"].value_counts().sort_index().to_dict(),
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
