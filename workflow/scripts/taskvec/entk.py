"""The eNTK of the task-vector tasks and its cross-task diagnostics (rule taskvec_entk).

One kernel over the first ``kernel_size`` training examples of every task, each encoded with its own
template, for the model whose outputs are the tasks' contrasts logit_w1 − logit_w0
(kernelft.taskvec.arithmetic.contrast_model); per pair the centred cross-task alignment, the top-k
eigenspace overlap, the CKA of the two task outputs on the same inputs and the cross-block size.
"""

import logging

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.entk import check_finite, empirical_ntk_fn
from kernelft.taskvec.arithmetic import (
    concatenate_batches,
    contrast_model,
    output_kernel,
    task_contrasts,
    task_kernel,
    task_set,
    union_model,
    union_words,
)
from kernelft.taskvec.vectors import centred_kernel_alignment, pair_diagnostics

log = logging.getLogger("kernelft.taskvec_entk")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    section, tasks = params.taskvec, params.tasks
    size = section["kernel_size"]
    model, tokenizer = union_model(params.model, list(tasks.values()), seed=params.seed)
    words = union_words(list(tasks.values()))
    sets = [task_set(name, pd.read_parquet(path).head(size), tasks[name], tokenizer, words, params.model)
            for name, path in zip(tasks, snakemake.input.train)]
    contrasts, contrast_of_task = task_contrasts([s.columns for s in sets], len(words))
    batch = concatenate_batches([s.batch for s in sets])
    ntk = empirical_ntk_fn(contrast_model(model, contrasts), kind="sgd", params=section["params"], output="logits",
                           max_memory_gb=params.max_memory_gb)
    full = ntk(batch)
    contrast_of_example = np.repeat(contrast_of_task, [len(s.labels) for s in sets])
    kernel = check_finite(task_kernel(full, contrast_of_example), f"eNTK {snakemake.output.kernel}")
    index = {s.name: np.arange(i * size, (i + 1) * size) for i, s in enumerate(sets)}
    rows = []
    for pair in section["pairs"]:
        a, b = pair["tasks"]
        ia, ib = index[a], index[b]
        both = np.concatenate([ia, ib])
        ka = output_kernel(full, contrast_of_task[list(tasks).index(a)])[np.ix_(both, both)]
        kb = output_kernel(full, contrast_of_task[list(tasks).index(b)])[np.ix_(both, both)]
        rows.append({"pair_name": pair["name"], "pair": f"{a}+{b}",
                     **pair_diagnostics(kernel[np.ix_(ia, ia)], kernel[np.ix_(ib, ib)], kernel[np.ix_(ia, ib)],
                                        section["top_k"]),
                     "cka_same_inputs": centred_kernel_alignment(ka, kb)})
    table = pd.DataFrame(rows)
    np.savez(snakemake.output.kernel, kernel=kernel, full=full, tasks=np.array(list(tasks)),
             contrast_of_example=contrast_of_example)
    table.to_csv(snakemake.output.diagnostics, index=False)
    meta = {"model": params.model, "tasks": tasks, "taskvec": section}
    write_metadata(snakemake.output.kernel, meta, seed=params.seed)
    write_metadata(snakemake.output.diagnostics, meta, seed=params.seed)
    log.info("task-vector eNTK %s; diagnostics:\n%s", kernel.shape, table.to_string())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
