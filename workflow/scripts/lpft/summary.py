"""Gather the LP-FT runs: curves, per-run accuracy / feature change / calibration before and after
temperature scaling, pooled reliability tables, the eNTK split, and the paper-style table
(rule lpft_summary)."""

import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.lpft.stage import paper_table, pooled_reliability, run_summary

log = logging.getLogger("kernelft.lpft_summary")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output = snakemake.input, snakemake.output
    curves = [pd.read_csv(path) for path in inputs.curves]
    arrays = [dict(np.load(path)) for path in inputs.logits]
    runs = pd.DataFrame([run_summary(curve, data) for curve, data in zip(curves, arrays)])
    reliability = pooled_reliability([(row.method, data, row.temperature) for row, data in
                                      zip(runs.itertuples(), arrays)])
    table = paper_table(runs)
    frames = {output.curves: pd.concat(curves, ignore_index=True), output.runs: runs,
              output.ntk: pd.concat([pd.read_csv(path) for path in inputs.ntk], ignore_index=True),
              output.reliability: reliability, output.table: table}
    for path, frame in frames.items():
        frame.to_csv(path, index=False)
        write_metadata(path, {}, inputs=list(snakemake.input))
    log.info("LP-FT stage (mean ± std over seeds):\n%s", table.to_string(index=False))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
