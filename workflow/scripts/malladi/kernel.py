"""The eNTKs of the pretrained model on a k-shot sample and the test subset (rule malladi_kernel): K(SGD)
over all parameters, K(A-SignGD) with ``output.signgd_kernel``, and K(SGD) over LoRA parameters only
(and the head's, with ``lora.head``), all from one collection of per-example gradients. With
``init_head: probe`` a linear head starts from the logistic-regression probe, as the FT runs do and as
the reference's no-prompt kernels. The LoRA adapters are injected first with B = 0, so the model's
outputs, f0 and the full kernels (over every parameter but the adapters) are those of the pretrained
model (with the probe's head where it is used)."""

import logging

import numpy as np

from kernelft.core.config import section_defaults
from kernelft.core.logs import setup_logging
from kernelft.core.provenance import write_metadata
from kernelft.core.seeds import run_seed
from kernelft.core.threads import limit_threads
from kernelft.entk import add_lora
from kernelft.malladi.runs import pretrained_kernels, run_data
from kernelft.text.experiment import build_model
from kernelft.training.probe import fit_linear_probe

log = logging.getLogger("kernelft.malladi_kernel")


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    limit_threads(snakemake.threads)
    params, wildcards, output = snakemake.params, snakemake.wildcards, snakemake.output
    seed = run_seed(params.seed, int(wildcards.seed))
    model, tokenizer, head = build_model(params.model, params.task, seed=seed)
    (train, train_labels), (test, test_labels) = run_data(
        snakemake.input.train, snakemake.input.test, tokenizer, head, params.model["max_length"],
        params.malladi["test_size"], params.seed,
    )
    if params.malladi.get("init_head") == "probe":  # the reference's --from_linearhead kernels
        probe = section_defaults("finetune")
        fit_linear_probe(model, train, train_labels, cv=probe["lp_cv"], C=probe["lp_C"], max_iter=probe["lp_max_iter"],
                         seed=seed)
    labels = {"train_labels": train_labels.numpy(), "test_labels": test_labels.numpy()}
    meta = {"model": params.model, "task": params.task, "malladi": params.malladi}
    memory = params.malladi["max_memory_gb"]

    lora = params.lora
    add_lora(model, rank=lora["rank"], alpha=lora["alpha"], target_modules=tuple(lora["targets"]), seed=seed)  # B = 0
    kinds = {"kernel": "sgd", "signgd_kernel": "asymmetric_signgd"}
    kinds = {name: kind for name, kind in kinds.items() if hasattr(output, name)}
    kernels = pretrained_kernels(model, train, test, params="no_lora", kinds=tuple(kinds.values()),
                                 max_memory_gb=memory, lora_params="lora_head" if lora.get("head") else "lora")
    for name, kind in kinds.items():
        arrays = kernels[kind]
        np.savez(output[name], **arrays, **labels)
        write_metadata(output[name], {**meta, "kind": kind}, seed=seed, seconds=float(arrays["seconds"]))
        log.info("%s kernels of %s: train %s, test %s; %.1f s", kind, output[name], arrays["kernel_train"].shape,
                 arrays["kernel_test"].shape, float(arrays["seconds"]))

    lora_arrays = kernels["lora"]
    np.savez(output.lora_kernel, **lora_arrays, **labels)
    write_metadata(output.lora_kernel, {**meta, "kind": "sgd", "lora": lora}, seed=seed,
                   seconds=float(lora_arrays["seconds"]))
    log.info("LoRA kernels of %s (from the same collection)", output.lora_kernel)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821
