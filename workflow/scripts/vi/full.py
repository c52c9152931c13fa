"""Snakemake entry point of the F14 rules (VI in full): coverage, Shapley, p = 100, real data, table, figure.

One script serves the rules of workflow/rules/vi.smk below the F14 marker and dispatches on
``snakemake.rule``; the logic lives in kernelft.vi.full and kernelft.vi.plots.
"""


import json
import logging
from pathlib import Path

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.vi import full, simulation, tree_kernel

log = logging.getLogger("kernelft.workflow.vi_full")


def _write(frame: pd.DataFrame, path: str, section: dict, seed: int, **extra) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    write_metadata(path, section, seed, **extra)


def _study(snakemake, run) -> None:
    section, seed = snakemake.params.vi, snakemake.params.seed
    cfg = simulation.VIConfig.from_dict(section)
    name = snakemake.rule.removeprefix("vi_")
    raw = run(section[name], cfg, seed, threads=snakemake.threads)
    log.info("%s: %d rows, %.1f s of fitting", name, len(raw), raw["seconds"].sum())
    _write(raw, snakemake.output.raw, section, seed, threads=snakemake.threads)


def coverage(snakemake) -> None:
    """vi_coverage: repeated data sets at one ρ -> results/vi/coverage/rho{rho}.csv."""
    rho = float(snakemake.wildcards.rho)
    _study(snakemake, lambda section, cfg, seed, threads: full.run_coverage(rho, section, cfg, seed, threads))


def tree_kernel_check(snakemake) -> None:
    """vi_tree_kernel: the rate check with the symmetric-tree kernel -> points and summary CSVs."""
    section, seed = snakemake.params.vi, snakemake.params.seed
    points, summary = tree_kernel.tree_rate_check(section["tree_kernel"], seed)
    _write(points, snakemake.output.points, section, seed)
    _write(summary, snakemake.output.summary, section, seed)


def table(snakemake) -> None:
    """vi_full_table: F8 table + the F14 studies -> results/tables/F14_vi_full.csv and the headline JSON."""
    section, seed = snakemake.params.vi, snakemake.params.seed
    inputs = snakemake.input
    f14 = full.f14_table(
        pd.read_csv(inputs.f8),
        pd.concat([pd.read_csv(path) for path in inputs.coverage], ignore_index=True),
        pd.read_csv(inputs.shapley),
        pd.read_csv(inputs.highdim),
        pd.read_csv(inputs.real),
        pd.read_csv(inputs.tree_points),
        pd.read_csv(inputs.tree_summary),
        level=float(section["level"]),
    )
    numbers = full.headline(f14)
    full.log_headline(numbers)
    _write(f14, snakemake.output.table, section, seed)
    Path(snakemake.output.headline).write_text(json.dumps(numbers, indent=2) + "\n")
    write_metadata(snakemake.output.headline, section, seed)


def figure(snakemake) -> None:
    """vi_full_figure: the F14 table -> figures/F14_vi_full.png and .pdf."""
    from kernelft.core.plotting import save
    from kernelft.vi.plots import plot_vi_full

    save(plot_vi_full(pd.read_csv(snakemake.input.table)), snakemake.output.png, snakemake.output.pdf)
    for path in (snakemake.output.png, snakemake.output.pdf):
        write_metadata(path, {}, inputs=list(snakemake.input))
    log.info("wrote %s and %s", snakemake.output.png, snakemake.output.pdf)


STEPS = {
    "vi_coverage": coverage,
    "vi_shapley": lambda sm: _study(sm, full.run_shapley),
    "vi_highdim": lambda sm: _study(sm, full.run_highdim),
    "vi_real": lambda sm: _study(sm, full.run_real),
    "vi_tree_kernel": tree_kernel_check,
    "vi_full_table": table,
    "vi_full_figure": figure,
}


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    STEPS[snakemake.rule](snakemake)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
