"""F6: test loss at the stopping time vs n, measured vs predicted slope, real tasks and the synthetic
check (rule figure_rates)."""

import pandas as pd

from kernelft.logs import setup_logging
from kernelft.plots import save
from kernelft.plots.earlystop import plot_rates
from kernelft.provenance import write_metadata
from kernelft.rate_study import rate_tables


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output = snakemake.input, snakemake.output

    def read(paths):
        return [pd.read_csv(path) for path in paths]

    summary, points = rate_tables(read(inputs.rates) + read(inputs.synthetic_check),
                                  read(inputs.points) + read(inputs.synthetic_points))
    summary.to_csv(output.table, index=False)
    points.to_csv(output.points, index=False)
    save(plot_rates(points, level=snakemake.params.level), output.png, output.pdf)
    for path in (output.table, output.points, output.png, output.pdf):
        write_metadata(path, {"level": snakemake.params.level}, inputs=list(snakemake.input))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
