"""Known-truth checks of the early-stopping stage on the pool eNTK's eigenvectors (rule earlystop_synthetic)."""

import logging

import numpy as np

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.earlystop.study import SPECTRUM_RANGE_KEYS, synthetic_study
from kernelft.kernels.spectrum import fit_spectrum, kernel_eigenvalues

log = logging.getLogger("kernelft.earlystop_synthetic")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, output = snakemake.params, snakemake.output
    kernel = np.load(snakemake.input.kernel)["kernel"]
    ranges = {key: params.spectrum[key] for key in SPECTRUM_RANGE_KEYS}
    fit = fit_spectrum(kernel_eigenvalues(kernel), **ranges)
    points, check = synthetic_study(kernel, params.earlystop, fit, task=snakemake.wildcards.task, fit_ranges=ranges)
    config = {"earlystop": params.earlystop, "spectrum": params.spectrum}
    for frame, path in ((points, output.points), (check, output.check)):
        frame.to_csv(path, index=False)
        write_metadata(path, config, seed=int(params.earlystop["synthetic"]["seed"]), input=snakemake.input.kernel)
    for row in check.itertuples():
        report = log.info if row.passed else log.warning
        report("%s: measured slope %.3f [%.3f, %.3f], predicted %.3f -> %s (%s)", row.label, row.slope, row.ci_low,
               row.ci_high, row.predicted_slope, "pass" if row.passed else "FAIL", row.verdict)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
