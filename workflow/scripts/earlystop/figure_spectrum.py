"""F5: eNTK spectra with power-law and exponential fits (rule figure_spectrum)."""

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.earlystop.plots import plot_spectrum


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    paths = [*snakemake.input.spectra, *snakemake.input.pool_spectra]  # pool: the early-stopping stage's kernel
    table = pd.concat([pd.read_csv(path) for path in paths], ignore_index=True)
    table.to_csv(snakemake.output.table, index=False)
    save(plot_spectrum(table), snakemake.output.png, snakemake.output.pdf)
    for path in (snakemake.output.table, snakemake.output.png, snakemake.output.pdf):
        write_metadata(path, {"inputs": paths})


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
