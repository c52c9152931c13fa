"""Fine-tune the pretrained model on one task, as the real network and as its linearization, and save
both task vectors τ = θ_t − θ_0 (rule taskvec_finetune).

Method ``ft`` trains the network (τ read from the model after training); ``linearized`` trains in the
tangent space at θ_0 (τ = the trained displacement Δθ). Both start from the same θ_0 with the same
seed, data and budget.
"""

import logging

import pandas as pd
import torch

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import seed_everything
from kernelft.core.threads import limit_threads
from kernelft.taskvec import METHODS
from kernelft.taskvec.arithmetic import evaluation_frame
from kernelft.taskvec.vectors import parameters_of, set_parameters, task_vector, vector_norm
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.runner import FinetuneConfig, config_dict, finetune, trainable_names

log = logging.getLogger("kernelft.taskvec_finetune")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    section, seed, max_length = params.taskvec, params.seed, params.model["max_length"]
    curves = []
    # One model for both methods: θ_0 is put back after each run (a linearized run leaves the model at θ_0).
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    train, train_labels = encode_frame(pd.read_parquet(snakemake.input.train), tokenizer, head, max_length)
    # The curve's test accuracy (a check that the run learned); F13's accuracies are taskvec_arithmetic's.
    test_frame = pd.read_parquet(snakemake.input.test)
    n_curve = min(section["n_curve"], len(test_frame))
    test_frame = evaluation_frame(test_frame, n_curve, seed, len(params.task["labels"]))
    test, test_labels = encode_frame(test_frame, tokenizer, head, max_length)
    for method in METHODS:
        seed_everything(seed)
        config = FinetuneConfig.from_section(section, name="taskvec", method=method, seed=seed,
                                             eval_every=section["steps"])
        names = trainable_names(model, config)
        theta_0 = parameters_of(model, names)
        result = finetune(model, train, train_labels, test, test_labels, config)
        if method == "linearized":
            vector = result.model.displacement()
        else:
            vector = task_vector(parameters_of(model, names), theta_0)
        set_parameters(model, theta_0)  # back to θ_0 for the next method
        vector = {name: value.contiguous().clone() for name, value in vector.items()}
        path = getattr(snakemake.output, method)
        torch.save(vector, path)
        curve = result.curve
        curve.insert(0, "task", snakemake.wildcards.task)
        curve.insert(1, "method", method)
        curves.append(curve)
        summary = {"vector_norm": vector_norm(vector), "trained_parameters": sum(v.numel() for v in vector.values()),
                   "final_test_accuracy": float(curve["test_accuracy"].dropna().iloc[-1])}
        write_metadata(path, {"model": params.model, "task": params.task, "finetune": config_dict(config)},
                       seed=seed, **summary)
        log.info("task vector %s: %s", path, summary)
    pd.concat(curves, ignore_index=True).to_csv(snakemake.output.curve, index=False)
    write_metadata(snakemake.output.curve, {"model": params.model, "task": params.task, "taskvec": section},
                   seed=seed)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
