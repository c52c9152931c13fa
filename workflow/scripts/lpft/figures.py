"""F9-F12 of the LP-FT stage from the summary tables (rules figure_lpft_F9 ... figure_lpft_F12):
each writes its figure and the CSV of the numbers it draws, with the intervals and verdicts of its claims."""

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.lpft.claims import annotate
from kernelft.lpft.plots import plot_calibration, plot_feature_change, plot_id_ood, plot_ntk_decomposition
from kernelft.lpft.stage import figure_tables


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    runs, ood, verdicts = pd.read_csv(inputs.runs), pd.read_csv(inputs.ood), pd.read_csv(inputs.claims)
    tables = annotate(figure_tables(pd.read_csv(inputs.curves), runs, pd.read_csv(inputs.ntk), ood),
                      pd.read_csv(inputs.intervals), verdicts)
    number = params.figure.split("_")[0]
    mine = verdicts[verdicts["figure"] == number] if len(verdicts) else verdicts
    draw = {
        "F9": lambda: plot_feature_change(tables["F9"], mine),
        "F10": lambda: plot_ntk_decomposition(tables["F10"]),
        "F11": lambda: plot_id_ood(tables["F11"], runs, ood, id_task=params.id_task, verdicts=mine),
        "F12": lambda: plot_calibration(tables["F12"], pd.read_csv(inputs.reliability), mine),
    }
    tables[number].to_csv(output.table, index=False)
    save(draw[number](), output.png, output.pdf)
    for path in (output.table, output.png, output.pdf):
        write_metadata(path, {"figure": params.figure, "claims": dict(params.claims)}, inputs=list(snakemake.input))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
