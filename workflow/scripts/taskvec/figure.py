"""F13: task vectors, real vs linearized, interference vs kernel alignment, the task-arithmetic table with its
intervals and the claims table with their verdicts (rule figure_task_vectors)."""

import logging

import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.plotting import save
from kernelft.core.provenance import write_metadata
from kernelft.taskvec.claims import Scores, Settings, claims_table, summary_intervals
from kernelft.taskvec.plots import plot_task_vectors
from kernelft.taskvec.tables import summary_table

log = logging.getLogger("kernelft.taskvec_figure")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    section = params.taskvec
    pairs = section["pairs"]
    accuracy = pd.concat([pd.read_csv(path) for path in inputs.accuracy], ignore_index=True)
    disentanglement = pd.concat([pd.read_csv(path) for path in inputs.disentanglement], ignore_index=True)
    # The linearized grid is additive by construction; its measured error is the direct jvp at τ_A + τ_B.
    keep = (disentanglement["model"] == "real") == (disentanglement["check"] == "grid")
    disentanglement = disentanglement[keep]
    diagnostics = pd.read_csv(inputs.diagnostics)
    scores = Scores(pd.concat([pd.read_parquet(path) for path in inputs.correct], ignore_index=True))
    settings = Settings.from_config(params.claims, params.seed)
    summary = summary_intervals(summary_table(accuracy, disentanglement, diagnostics, pairs), scores, settings)
    verdicts = claims_table(scores, pairs, diagnostics, settings, section["similar_pair"])
    summary.to_csv(output.table, index=False)
    verdicts.to_csv(output.claims, index=False)
    meta = {"taskvec": section, "claims": params.claims, "method": params.method}
    write_metadata(output.table, meta, seed=params.seed)
    write_metadata(output.claims, meta, seed=params.seed)
    save(plot_task_vectors(accuracy, summary, pairs, verdicts), output.png, output.pdf)
    log.info("F13 table:\n%s", summary.round(3).to_string())
    log.info("F13 claims (%s):\n%s", params.method,
             verdicts[["claim", "model", "subject", "estimate", "estimate_low", "estimate_high", "verdict"]]
             .round(3).to_string())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
