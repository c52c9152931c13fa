"""F6: test loss at the stopping time vs n, measured vs predicted slope, real tasks and the synthetic
check (rule figure_rates)."""

import json
import logging
from pathlib import Path

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.earlystop.finetune import rate_points
from kernelft.earlystop.plots import plot_rates
from kernelft.earlystop.study import rate_tables, summarize_rates

log = logging.getLogger("kernelft.figure_rates")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output = snakemake.input, snakemake.output

    def read(paths):
        return [pd.read_csv(path) for path in paths]

    real_points = read(inputs.points)
    finetune, finetune_rates = [], []
    if inputs.finetune:  # real fine-tuning stopped at T̂; a slope needs three runs over two sizes
        frame = rate_points([json.loads(Path(path).read_text()) for path in inputs.finetune], pd.concat(real_points))
        if len(frame) >= 3 and frame["n"].nunique() >= 2:
            finetune = [frame]
            finetune_rates = [summarize_rates(frame, snakemake.params.level).assign(source="finetune")]
        else:
            log.warning("F6: %d real fine-tuning runs reached T̂; too few for a slope, left out", len(frame))
    summary, points = rate_tables(read(inputs.rates) + finetune_rates + read(inputs.synthetic_check),
                                  real_points + finetune + read(inputs.synthetic_points))
    summary.to_csv(output.table, index=False)
    points.to_csv(output.points, index=False)
    save(plot_rates(points, level=snakemake.params.level), output.png, output.pdf)
    for path in (output.table, output.points, output.png, output.pdf):
        write_metadata(path, {"level": snakemake.params.level}, inputs=list(snakemake.input))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
