"""Gather the LP-FT runs: curves, per-run accuracy / feature metrics / calibration before and after
temperature scaling, per-OOD-set results, pooled reliability tables, the eNTK split, and the paper-style
table (rule lpft_summary)."""

import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.lpft.stage import summarize

log = logging.getLogger("kernelft.lpft_summary")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output = snakemake.input, snakemake.output
    curves = [pd.read_csv(path) for path in inputs.curves]
    arrays = [dict(np.load(path)) for path in inputs.logits]
    tables = summarize(curves, arrays, snakemake.params.ood_tasks)
    tables["ntk"] = pd.concat([pd.read_csv(path) for path in inputs.ntk], ignore_index=True)
    for name, frame in tables.items():
        frame.to_csv(output[name], index=False)
        write_metadata(output[name], {"ood_tasks": list(snakemake.params.ood_tasks)}, inputs=list(snakemake.input))
    log.info("LP-FT stage (mean ± std over seeds):\n%s", tables["table"].to_string(index=False))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
