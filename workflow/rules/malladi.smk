# Kernel vs fine-tuning (Malladi et al., ICML 2023; issue #5, figures F1-F4). Per task, head
# (prompt | linear), k shots per label and seed: the eNTKs of the pretrained model on the k-shot
# training sample and a test subset (K(SGD), and K(A-SignGD) when Adam is among the optimizers),
# real fine-tuning on the same data with each optimizer (and K(SGD) of the fine-tuned model, for the
# kernel change), the linearized model, and the kernel of the LoRA parameters; plus the CountSketch
# projection error vs dimension.

add_figures("F1_kernel_vs_ft", "F2_prompt_vs_linear", "F3_kernel_change", "F4_lora_projection")  # rule malladi_figures

MALLADI = f"{RESULTS}/malladi"


wildcard_constraints:
    head="prompt|linear",
    k=r"\d+",
    optimizer="sgd|adam",


def malladi_run_dir(task, head, k, seed):
    return f"{MALLADI}/{task}/{head}/k{k}-seed{seed}"


def malladi_files(name, seeds=None, shots=None):
    """One file per run (task, head, k, seed) of the `malladi` section (the seeds of each k: seeds_for);
    ``seeds`` and ``shots`` limit the seeds and the k; ``{optimizer}`` in ``name`` expands to every FT
    optimizer."""
    section = config["malladi"]
    return [
        f"{malladi_run_dir(task, head, k, seed)}/{name.format(optimizer=optimizer)}"
        for task in section["tasks"]
        for head in section["heads"]
        for k in (section["shots"] if shots is None else shots)
        for seed in seeds_for(section, k)
        if seeds is None or seed in seeds
        for optimizer in (section["optimizers"] if "{optimizer}" in name else [None])
    ]


def malladi_linearized_files():
    section = config["malladi"]
    return malladi_files("linearized-{optimizer}.csv", section["linearized_seeds"], section["linearized_shots"])


def malladi_model(head):
    """`model` with the run's head and the stage's max_length."""
    return {**model_config(), "head": head, "max_length": config["malladi"]["max_length"]}


def malladi_train(wildcards):
    """The k-shot sample: n = k x (number of classes) examples, balanced over labels."""
    n = int(wildcards.k) * len(config["tasks"][wildcards.task]["labels"])
    return train_file(wildcards.task, n, wildcards.seed)


def malladi_common():
    """What every kernel or FT job of the stage reads from the `malladi` section."""
    return {key: config["malladi"][key] for key in ("test_size", "max_memory_gb")}


def malladi_finetune_section(optimizer):
    """The FT settings of one optimizer: its learning rate and the shared steps (or epochs), batch, loss."""
    section = config["malladi"]["finetune"]
    return {
        "optimizer": optimizer,
        "lr": section["learning_rates"][optimizer],
        **{key: section[key] for key in ("epochs", "steps", "batch_size", "loss")},
    }


def malladi_resources():
    return int(1024 * (config["malladi"]["max_memory_gb"] + 2))


rule malladi_kernel:
    input:
        train=malladi_train,
        test=rules.data_task.output.test,
    output:
        kernel=f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/kernel.npz",
        lora_kernel=f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/lora_kernel.npz",
    params:
        model=lambda wc: malladi_model(wc.head),
        task=lambda wc: task_config(wc.task),
        malladi=malladi_common(),
        kind="sgd",
        lora=config["malladi"]["lora"],
        seed=config["seed"],
    log:
        log_file("malladi_kernel", "{task}/{head}/k{k}-seed{seed}"),
    benchmark:
        bench_file("malladi_kernel", "{task}/{head}/k{k}-seed{seed}")
    threads: 1
    resources:
        mem_mb=malladi_resources(),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/kernel.py"


# K(A-SignGD), the kernel of Adam-FT: its own job, so adding Adam leaves the K(SGD) jobs as they are.
use rule malladi_kernel as malladi_kernel_signgd with:
    output:
        kernel=f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/signgd_kernel.npz",
    params:
        model=lambda wc: malladi_model(wc.head),
        task=lambda wc: task_config(wc.task),
        malladi=malladi_common(),
        kind="asymmetric_signgd",
        seed=config["seed"],
    log:
        log_file("malladi_kernel_signgd", "{task}/{head}/k{k}-seed{seed}"),
    benchmark:
        bench_file("malladi_kernel_signgd", "{task}/{head}/k{k}-seed{seed}")


rule malladi_finetune:
    input:
        train=malladi_train,
        test=rules.data_task.output.test,
    output:
        curve=f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/ft-{{optimizer}}.csv",
        kernel_after=f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/ft-{{optimizer}}_kernel.npz",
    params:
        model=lambda wc: malladi_model(wc.head),
        task=lambda wc: task_config(wc.task),
        malladi=malladi_common(),
        finetune=lambda wc: malladi_finetune_section(wc.optimizer),
        method="ft",
        seed=config["seed"],
    log:
        log_file("malladi_finetune", "{task}/{head}/k{k}-seed{seed}-{optimizer}"),
    benchmark:
        bench_file("malladi_finetune", "{task}/{head}/k{k}-seed{seed}-{optimizer}")
    threads: 1
    resources:
        mem_mb=malladi_resources(),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/finetune.py"


use rule malladi_finetune as malladi_linearized with:
    output:
        curve=f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/linearized-{{optimizer}}.csv",
    params:
        model=lambda wc: malladi_model(wc.head),
        task=lambda wc: task_config(wc.task),
        malladi=malladi_common(),
        finetune=lambda wc: malladi_finetune_section(wc.optimizer),
        method="linearized",
        seed=config["seed"],
    log:
        log_file("malladi_linearized", "{task}/{head}/k{k}-seed{seed}-{optimizer}"),
    benchmark:
        bench_file("malladi_linearized", "{task}/{head}/k{k}-seed{seed}-{optimizer}")


def malladi_projection_train(wildcards):
    section = config["malladi"]
    task = section["projection"]["task"]
    n = section["shots"][0] * len(config["tasks"][task]["labels"])
    return train_file(task, n, seeds_for(section, section["shots"][0])[0])


rule malladi_projection:
    input:
        train=malladi_projection_train,
    output:
        errors=f"{MALLADI}/projection.csv",
    params:
        model=malladi_model(config["malladi"]["projection"]["head"]),
        task=task_config(config["malladi"]["projection"]["task"]),
        projection=config["malladi"]["projection"],
        max_memory_gb=config["malladi"]["max_memory_gb"],
        seed=config["seed"],
    log:
        log_file("malladi_projection", "projection"),
    benchmark:
        bench_file("malladi_projection", "projection")
    threads: 1
    resources:
        mem_mb=malladi_resources(),
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/projection.py"


def malladi_signgd_files():
    return malladi_files("signgd_kernel.npz") if "adam" in config["malladi"]["optimizers"] else []


rule malladi_summary:
    input:
        kernels=malladi_files("kernel.npz"),
        signgd_kernels=malladi_signgd_files(),
        finetune=malladi_files("ft-{optimizer}.csv"),
        kernels_after=malladi_files("ft-{optimizer}_kernel.npz"),
        linearized=malladi_linearized_files(),
        lora=malladi_files("lora_kernel.npz"),
    output:
        runs=f"{MALLADI}/runs.csv",
    params:
        solver={
            key: config["malladi"][key] for key in ("solver", "ridge", "adjust_for_init", "asymmetric_solver")
        },
    log:
        log_file("malladi_summary", "runs"),
    benchmark:
        bench_file("malladi_summary", "runs")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/summary.py"


MALLADI_FIGURES = {
    "F1": "F1_kernel_vs_ft",
    "F2": "F2_prompt_vs_linear",
    "F3": "F3_kernel_change",
    "F4": "F4_lora_projection",
}


def malladi_figure_outputs():
    """PNG, PDF and table of F1-F4 as outputs named F1_png, F1_pdf, F1_table, ..."""
    return {
        f"{number}_{key}": path
        for number, stem in MALLADI_FIGURES.items()
        for key, path in figure(stem, caption=f"../report/malladi/{number}.rst", category="F1-F4 kernel vs fine-tuning").items()
    }


rule malladi_figures:
    input:
        runs=rules.malladi_summary.output.runs,
        projection=rules.malladi_projection.output.errors,
    output:
        **malladi_figure_outputs(),
    params:
        figures=list(MALLADI_FIGURES),
    log:
        log_file("figures", "F1-F4_malladi"),
    benchmark:
        bench_file("figures", "F1-F4_malladi")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/figures.py"
