"""F7 (fine-tuning part): learning curves over sample sizes (rule figure_learning_curves)."""

import pandas as pd

from kernelft.logs import setup_logging
from kernelft.plots import save
from kernelft.plots.finetune import plot_finetune_curves
from kernelft.provenance import write_metadata


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = pd.concat([pd.read_csv(path) for path in snakemake.input.curves], ignore_index=True)
    table.to_csv(snakemake.output.table, index=False)
    save(plot_finetune_curves(table), snakemake.output.png, snakemake.output.pdf)
    write_metadata(snakemake.output.png, {"inputs": list(snakemake.input.curves)})


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
