"""Gather the LP-FT runs: curves, per-run accuracy / feature metrics / calibration before and after
temperature scaling, per-OOD-set results, pooled reliability tables, the eNTK split, the paper-style
table, and the claims of Tomihari & Sato with their intervals and verdicts (rule lpft_summary)."""

import logging

import numpy as np
import pandas as pd

from kernelft.core.claims import METHOD
from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.lpft.claims import Run, decide, method_intervals, paper_intervals
from kernelft.lpft.stage import summarize

log = logging.getLogger("kernelft.lpft_summary")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    curves = [pd.read_csv(path) for path in inputs.curves]
    arrays = [dict(np.load(path)) for path in inputs.logits]
    tables = summarize(curves, arrays, params.ood_tasks)
    tables["ntk"] = pd.concat([pd.read_csv(path) for path in inputs.ntk], ignore_index=True)
    runs = [Run(str(curve["method"].iloc[0]), int(curve["seed"].iloc[0]), data) for curve, data in zip(curves, arrays)]
    tables["intervals"] = method_intervals(runs, params.claims, params.seed)
    tables["claims"] = decide(runs, params.claims, params.seed)
    tables["table"] = paper_intervals(tables["table"], tables["intervals"])
    for name, frame in tables.items():
        frame.to_csv(output[name], index=False)
        write_metadata(output[name], {"ood_tasks": list(params.ood_tasks), "claims": dict(params.claims),
                                      "interval_method": METHOD}, seed=params.seed, inputs=list(snakemake.input))
    log.info("LP-FT stage (mean ± std over seeds, 95 %% intervals):\n%s", tables["table"].to_string(index=False))
    for row in tables["claims"].itertuples():
        log.info("%s: %s = %.4f [%.4f, %.4f] -> %s", row.figure, row.statistic, row.difference, row.low, row.high,
                 row.verdict)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
