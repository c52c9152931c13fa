"""Task arithmetic over the λ grid for the real and the linearized model, one after the other in one job
(rule taskvec_arithmetic).

ft: the network at θ_0 + Σ λ_t τ_t (one forward per grid point and each task set it is
evaluated on, kernelft.taskvec.arithmetic.evaluated_tasks). linearized: f(θ_0) + Σ λ_t J τ_t with every J τ_t
from one jvp per chunk of each set, vmapped over the vectors (exact for the tangent model); one direct jvp of
τ_A + τ_B per pair on the first CHECK_SIZE examples of each of its sets checks that additivity (its error is the
linearized model's disentanglement error at λ = 1). Both run in ``taskvec.eval_dtype``. Outputs: the accuracy
table, the disentanglement errors and the per-example correctness of every evaluation (for the intervals).
"""

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.threads import limit_threads
from kernelft.taskvec import METHODS
from kernelft.taskvec.arithmetic import (
    DISENTANGLEMENT_LAMBDA,
    disentanglement_table,
    evaluate_grid,
    evaluation_frame,
    evaluation_precision,
    grid_points,
    linearized_changes,
    linearized_outputs,
    real_outputs,
    task_set,
    union_model,
    union_words,
)
from kernelft.taskvec.vectors import binary_output, combine, disentanglement_error, parameters_of, tangent_logits

log = logging.getLogger("kernelft.taskvec_arithmetic")

CHECK_SIZE = 32
"""Examples per set of the direct-jvp additivity check (a numerical check of the tangent model, not a measurement)."""


def method_outputs(method, model, vectors, sets, pairs, eval_dtype) -> tuple[Callable, list[dict]]:
    """The grid's outputs of ``method`` (ft: the network; linearized: its tangent model) and, for the
    linearized model, the direct-jvp additivity checks."""
    if method == "ft":
        theta_0 = parameters_of(model, list(next(iter(vectors.values()))))
        return real_outputs(model, theta_0, vectors, sets, eval_dtype), []
    base, tangents = linearized_changes(model, vectors, sets, eval_dtype)
    checks = []
    for a, b in pairs:  # the jvp at τ_A + τ_B against the sum of the single-task changes
        for s in (s for s in sets if s.name in (a, b)):
            head = {key: value[:CHECK_SIZE] for key, value in s.batch.items()}
            with evaluation_precision(model, eval_dtype):
                _, change = tangent_logits(model, combine([vectors[a], vectors[b]], [1.0, 1.0]), head)
            f_0 = base[s.name][:CHECK_SIZE]
            f_ab = f_0 + change.double().cpu().numpy()[:, list(s.columns)]
            f = [binary_output(x) for x in (f_0, f_0 + tangents[a][s.name][:CHECK_SIZE],
                                            f_0 + tangents[b][s.name][:CHECK_SIZE], f_ab)]
            checks.append({"pair": f"{a}+{b}", "lambda": 1.0, "eval_task": s.name, "check": "direct_jvp",
                           "disentanglement_error": disentanglement_error(*f)})
    return linearized_outputs(base, tangents), checks


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    section, tasks = params.taskvec, params.tasks
    # one job for both methods: the model loads and the test sets are encoded once
    model, tokenizer = union_model(params.model, list(tasks.values()), seed=params.seed)
    words = union_words(list(tasks.values()))
    sets = []
    for name, path in zip(tasks, snakemake.input.test):
        frame = evaluation_frame(pd.read_parquet(path), section["n_test"], params.seed, len(tasks[name]["labels"]))
        sets.append(task_set(name, frame, tasks[name], tokenizer, words, params.model))
    pairs = [pair["tasks"] for pair in section["pairs"]]
    points = grid_points(list(tasks), pairs, section["lambdas"], section["negation_lambdas"])
    output = snakemake.output
    for i, method in enumerate(METHODS):
        vectors = {name: torch.load(path) for name, path in zip(tasks, getattr(snakemake.input, method))}
        outputs, checks = method_outputs(method, model, vectors, sets, pairs, section["eval_dtype"])
        accuracy, logits, correct = evaluate_grid(outputs, points, sets, pairs)
        disentanglement = disentanglement_table(logits, pairs, [DISENTANGLEMENT_LAMBDA])
        disentanglement["check"] = "grid"
        disentanglement = pd.concat([disentanglement, pd.DataFrame(checks)], ignore_index=True)
        for table in (accuracy, disentanglement, correct):
            table.insert(0, "model", "real" if method == "ft" else "linearized")
        if not np.isfinite(accuracy["accuracy"]).all():
            raise FloatingPointError(f"non-finite accuracies ({method})")
        accuracy.to_csv(output.accuracy[i], index=False)
        disentanglement.to_csv(output.disentanglement[i], index=False)
        correct.to_parquet(output.correct[i], index=False)
        meta = {"model": params.model, "tasks": tasks, "taskvec": section, "method": method}
        for path in (output.accuracy[i], output.disentanglement[i], output.correct[i]):
            write_metadata(path, meta, seed=params.seed)
        log.info("accuracy (%s):\n%s", method, accuracy.pivot_table(index=["operation", "vector", "lambda"],
                                                                    columns="eval_task", values="accuracy").to_string())
        log.info("disentanglement error (%s):\n%s", method, disentanglement.to_string())


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
