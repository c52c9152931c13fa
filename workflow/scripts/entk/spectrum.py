"""Eigenvalues of K/n with power-law and exponential fits and their intervals (rule spectrum)."""

import logging

import numpy as np

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.kernels.solvers import flatten_block_kernel
from kernelft.kernels.spectrum import bootstrap_rates, fit_spectrum, kernel_eigenvalues, spectrum_frame

log = logging.getLogger("kernelft.spectrum")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params.spectrum
    kernel = np.load(snakemake.input.kernel)["kernel_train"]
    if kernel.ndim == 4:  # C classes: the (nC x nC) operator of the block kernel
        kernel = flatten_block_kernel(kernel)
    ranges = {"skip": params["skip"], "rel_floor": params["rel_floor"], "max_fraction": params["max_fraction"]}
    eigenvalues = kernel_eigenvalues(kernel)
    fit = fit_spectrum(eigenvalues, **ranges)
    intervals = bootstrap_rates(
        kernel, n_boot=params["n_boot"], fraction=params["boot_fraction"], seed=snakemake.params.seed, **ranges
    )
    wildcards = snakemake.wildcards
    frame = spectrum_frame(
        eigenvalues, fit, label=f"{wildcards.task} n={wildcards.n} seed={wildcards.seed}", intervals=intervals
    )
    frame.insert(0, "task", wildcards.task)
    frame.insert(1, "seed", int(wildcards.seed))
    frame.to_csv(snakemake.output.spectrum, index=False)
    write_metadata(snakemake.output.spectrum, {"spectrum": params}, seed=snakemake.params.seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
