"""Fine-tune the pretrained model on one training sample and record its learning curve (rule finetune).

Optional, when the rule declares them: ``input.ood`` (a task table evaluated as the extra set
``ood``: columns ood_loss, ood_accuracy) and ``output.logits`` (an NPZ with the final test logits
and labels, plus ``ood_logits``/``ood_labels``, for calibration).
"""

import logging
from dataclasses import asdict

import numpy as np
import pandas as pd

from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed, seed_everything
from kernelft.core.threads import limit_threads
from kernelft.text.experiment import build_model, encode_frame
from kernelft.training.runner import FinetuneConfig, config_dict, finetune

log = logging.getLogger("kernelft.finetune")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params = snakemake.params
    # The run's seed mixes the global seed and the data seed, so seeds differ across samples.
    seed = run_seed(params.seed, int(snakemake.wildcards.seed))
    seed_everything(seed)
    config = FinetuneConfig.from_section(params.finetune, method=snakemake.wildcards.method, seed=seed)
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    max_length = params.model["max_length"]

    def encoded(path: str):
        return encode_frame(pd.read_parquet(path), tokenizer, head, max_length)

    train, train_labels = encoded(snakemake.input.train)
    test, test_labels = encoded(snakemake.input.test)
    ood_path = getattr(snakemake.input, "ood", None)
    extra = {"ood": encoded(ood_path)} if ood_path else None
    result = finetune(model, train, train_labels, test, test_labels, config, extra_eval=extra)
    curve = result.curve
    curve.insert(0, "n", int(snakemake.wildcards.n))
    curve.insert(1, "seed", int(snakemake.wildcards.seed))
    curve.insert(0, "task", snakemake.wildcards.task)
    curve.insert(1, "method", config.method)
    curve.to_csv(snakemake.output.curve, index=False)
    summary = {"trainable_parameters": result.num_trainable,
               "linear_probe": asdict(result.linear_probe) if result.linear_probe else None}
    meta = {"model": params.model, "task": params.task, "finetune": config_dict(config)}
    write_metadata(snakemake.output.curve, meta, seed=seed, **summary)
    logits_path = getattr(snakemake.output, "logits", None)
    if logits_path:
        arrays = {"logits": result.final_logits, "labels": test_labels.numpy()}
        if extra:
            arrays |= {"ood_logits": result.extra_logits["ood"], "ood_labels": extra["ood"][1].numpy()}
        np.savez(logits_path, **arrays)
        write_metadata(logits_path, meta, seed=seed, **summary)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
