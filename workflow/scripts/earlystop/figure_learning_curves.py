"""F7: kernel-GD learning curves with the rule's, the oracle's and the validation stopping times, beside
the real fine-tuning curves (rule figure_learning_curves)."""

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.earlystop.plots import plot_learning_curves_with_finetune
from kernelft.earlystop.study import learning_curve_table


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output = snakemake.input, snakemake.output
    table = learning_curve_table([pd.read_csv(path) for path in inputs.kernel_curves],
                                 [pd.read_csv(path) for path in inputs.curves])
    table.to_csv(output.table, index=False)
    save(plot_learning_curves_with_finetune(table), output.png, output.pdf)
    for path in (output.table, output.png, output.pdf):
        write_metadata(path, {}, inputs=list(snakemake.input))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
