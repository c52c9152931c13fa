"""Figures F1–F4 of the kernel-vs-fine-tuning stage and their tables (rule malladi_figures)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.malladi.plots import FIGURES
from kernelft.malladi.tables import figure_table

log = logging.getLogger("kernelft.malladi_figure")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output = snakemake.input, snakemake.output
    runs, projection, claims = pd.read_csv(inputs.runs), pd.read_csv(inputs.projection), pd.read_csv(inputs.claims)
    for figure in snakemake.params.figures:
        png, pdf, table = (output[f"{figure}_{key}"] for key in ("png", "pdf", "table"))
        figure_table(runs, figure, projection, claims).to_csv(table, index=False)
        plot = FIGURES[figure]
        save(plot(runs, projection, claims) if figure == "F4" else plot(runs, claims), png, pdf)
        for path in (table, png, pdf):
            write_metadata(path, {"figure": figure}, inputs=list(snakemake.input))
        log.info("%s: %s", figure, png)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
