"""F13: task vectors, real vs linearized, interference vs kernel alignment, and the task-arithmetic
table (rule figure_task_vectors)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.taskvec.arithmetic import summary_table
from kernelft.taskvec.plots import plot_task_vectors

log = logging.getLogger("kernelft.taskvec_figure")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output, pairs = snakemake.input, snakemake.output, snakemake.params.pairs
    accuracy = pd.concat([pd.read_csv(path) for path in inputs.accuracy], ignore_index=True)
    disentanglement = pd.concat([pd.read_csv(path) for path in inputs.disentanglement], ignore_index=True)
    # The linearized grid is additive by construction; its measured error is the direct jvp at τ_A + τ_B.
    keep = (disentanglement["model"] == "real") == (disentanglement["check"] == "grid")
    disentanglement = disentanglement[keep]
    summary = summary_table(accuracy, disentanglement, pd.read_csv(inputs.diagnostics), pairs)
    summary.to_csv(output.table, index=False)
    write_metadata(output.table, {"taskvec": {"pairs": pairs}})
    save(plot_task_vectors(accuracy, summary, pairs), output.png, output.pdf)
    log.info("F13 table:\n%s", summary.round(3).to_string())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
