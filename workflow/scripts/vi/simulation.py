"""Snakemake entry point of the VI stage (F8): simulate one (ρ, n) cell, gather the table, draw the figure.

One script serves the three rules of workflow/rules/vi.smk and dispatches on ``snakemake.rule``;
the logic lives in kernelft.vi.simulation and kernelft.vi.plots.
"""


import json
import logging
from pathlib import Path

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.vi import simulation

log = logging.getLogger("kernelft.workflow.vi")


def simulate(snakemake) -> None:
    """vi_simulate: every repetition of one (ρ, n) cell -> results/vi/raw/rho{rho}_n{n}.csv."""
    section, seed = snakemake.params.vi, snakemake.params.seed
    rho, n = float(snakemake.wildcards.rho), int(snakemake.wildcards.n)
    raw = simulation.run_cell(rho, n, int(section["repetitions"]), simulation.VIConfig.from_dict(section), seed,
                      threads=snakemake.threads)
    out = Path(snakemake.output.raw)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw.to_csv(out, index=False)
    write_metadata(out, section, seed, rho=rho, n=n, threads=snakemake.threads)


def table(snakemake) -> None:
    """vi_table: all cells -> the F8 table, the pooled raw table, speed-ups and the headline numbers."""
    section, seed = snakemake.params.vi, snakemake.params.seed
    raw = pd.concat([pd.read_csv(path) for path in snakemake.input.raw], ignore_index=True)
    summary = simulation.summarize(raw, interval=float(section["interval"]))
    numbers = simulation.headline(raw, summary)
    simulation.log_headline(numbers)
    outputs = {
        snakemake.output.table: lambda p: summary.to_csv(p, index=False),
        snakemake.output.raw: lambda p: raw.to_csv(p, index=False),
        snakemake.output.speedup: lambda p: simulation.speedups(raw, by=("model", "rho", "n")).to_csv(p, index=False),
        snakemake.output.headline: lambda p: Path(p).write_text(json.dumps(numbers, indent=2) + "\n"),
    }
    for path, write in outputs.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write(path)
        write_metadata(path, section, seed)


def figure(snakemake) -> None:
    """vi_figure: the F8 table -> figures/F8_vi_simulation.png and .pdf."""
    from kernelft.core.plotting import save
    from kernelft.vi.plots import plot_vi_simulation

    save(plot_vi_simulation(pd.read_csv(snakemake.input.table)), snakemake.output.png, snakemake.output.pdf)
    for path in (snakemake.output.png, snakemake.output.pdf):
        write_metadata(path, {}, inputs=list(snakemake.input))
    log.info("wrote %s and %s", snakemake.output.png, snakemake.output.pdf)


STEPS = {"vi_simulate": simulate, "vi_table": table, "vi_figure": figure}


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    STEPS[snakemake.rule](snakemake)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
