"""Kernel GD with the RWY stopping rule, the oracle and a validation stop over sample sizes, on the pool
eNTK; measured vs predicted rate (rule earlystop_sweep)."""

import logging

import numpy as np

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.earlystop.study import pool_spectrum, real_rate_study, sweep_draws

log = logging.getLogger("kernelft.earlystop_sweep")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, output, task = snakemake.params, snakemake.output, snakemake.wildcards.task
    data = np.load(snakemake.input.kernel)
    kernel = data["kernel"]
    fit, intervals, spectrum = pool_spectrum(kernel, params.spectrum, seed=params.seed,
                                             label=f"{task} pool n={kernel.shape[0]}")
    spectrum.insert(0, "task", task)
    spectrum.insert(1, "seed", params.seed)
    points, curves, rates = real_rate_study(kernel, data["y"], data["f_init"], params.earlystop, fit, intervals,
                                            task=task, seed=params.seed)
    config = {"earlystop": params.earlystop, "spectrum": params.spectrum}
    for frame, path in ((spectrum, output.spectrum), (points, output.points), (curves, output.curves),
                        (rates, output.rates)):
        frame.to_csv(path, index=False)
        write_metadata(path, config, seed=params.seed, input=snakemake.input.kernel)
    np.savez(output.draws, **sweep_draws(kernel, data["y"], data["f_init"], params.earlystop, seed=params.seed))
    write_metadata(output.draws, config, seed=params.seed, input=snakemake.input.kernel)
    for row in rates.itertuples():
        log.info("%s: measured slope %.3f [%.3f, %.3f], predicted %.3f (%s %.3g) -> %s; mean excess of T̂ over T* %.4g",
                 row.label, row.slope, row.ci_low, row.ci_high, row.predicted_slope, row.predicted_law,
                 row.predicted_rate, row.verdict, row.mean_excess_rule)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
