# Kernel vs fine-tuning (Malladi et al., ICML 2023; issue #5, figures F1-F4). Per task, head
# (prompt | linear), k shots per label and seed: the eNTKs of the pretrained model on the k-shot
# training sample and a test subset (K(SGD), and K(A-SignGD) when Adam is among the optimizers, from one
# gradient collection in one job),
# real fine-tuning on the same data with each optimizer (and K(SGD) of the fine-tuned model, for the
# kernel change), the linearized model, and the kernel of the LoRA parameters; plus the CountSketch
# projection error vs dimension.

add_figures(*MALLADI_FIGURES.values())  # rule malladi_figures


rule malladi_kernel:
    input:
        train=malladi_train,
        test=rules.data_task.output.test,
    output:
        **malladi_kernel_outputs(),
    params:
        model=lambda wc: malladi_model(wc.head, wc.task),
        task=lambda wc: task_config(wc.task),
        malladi=lambda wc: malladi_common(wc.head),
        lora=malladi_lora_params(),
        seed=config["seed"],
    log:
        log_file("malladi_kernel", "{task}/{head}/k{k}-seed{seed}"),
    benchmark:
        bench_file("malladi_kernel", "{task}/{head}/k{k}-seed{seed}")
    priority: 1  # the longest Malladi jobs before the FT runs (#20)
    threads: 1
    resources:
        mem_mb=memory_mb(config["malladi"]["max_memory_gb"]),
        runtime=30,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/kernel.py"


rule malladi_finetune:
    input:
        unpack(malladi_finetune_inputs),
    output:
        # one job per run for every optimizer: the model loads once (~6 s of imports and loading per job, #20)
        **malladi_finetune_outputs("ft"),
    params:
        model=lambda wc: malladi_model(wc.head, wc.task),
        task=lambda wc: task_config(wc.task),
        malladi=lambda wc: malladi_common(wc.head),
        finetune=lambda wc: malladi_finetune_params(wc.head, "ft"),
        method="ft",
        seed=config["seed"],
    log:
        log_file("malladi_finetune", "{task}/{head}/k{k}-seed{seed}"),
    benchmark:
        bench_file("malladi_finetune", "{task}/{head}/k{k}-seed{seed}")
    threads: 1
    resources:
        mem_mb=memory_mb(config["malladi"]["max_memory_gb"]),
        runtime=30,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/finetune.py"


use rule malladi_finetune as malladi_linearized with:
    output:
        **malladi_finetune_outputs("linearized"),
    params:
        model=lambda wc: malladi_model(wc.head, wc.task),
        task=lambda wc: task_config(wc.task),
        malladi=lambda wc: malladi_common(wc.head),
        finetune=lambda wc: malladi_finetune_params(wc.head, "linearized"),
        method="linearized",
        seed=config["seed"],
    log:
        log_file("malladi_linearized", "{task}/{head}/k{k}-seed{seed}"),
    benchmark:
        bench_file("malladi_linearized", "{task}/{head}/k{k}-seed{seed}")


rule malladi_projection:
    input:
        train=malladi_projection_train,
    output:
        errors=f"{MALLADI}/projection.csv",
    params:
        model=malladi_model(config["malladi"]["projection"]["head"], config["malladi"]["projection"]["task"]),
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
        mem_mb=memory_mb(config["malladi"]["max_memory_gb"]),
        runtime=30,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/malladi/projection.py"


rule malladi_summary:
    input:
        kernels=malladi_files("kernel.npz"),
        signgd_kernels=malladi_signgd_files(),
        finetune=malladi_files("ft-{optimizer}.csv"),
        kernels_after=malladi_files("ft-{optimizer}_kernel.npz"),
        linearized=malladi_linearized_files(),
        lora=malladi_files("lora_kernel.npz"),
        predictions=malladi_files("ft-{optimizer}_test.npz"),
        linearized_predictions=malladi_linearized_files("_test.npz"),
    output:
        runs=f"{MALLADI}/runs.csv",
        correct=f"{MALLADI}/correct.parquet",
        claims=f"{MALLADI}/claims.csv",
    params:
        solver=malladi_solver_params(),
        claims=config["claims"],
        seed=config["seed"],
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


rule malladi_figures:
    input:
        runs=rules.malladi_summary.output.runs,
        claims=rules.malladi_summary.output.claims,
        projection=rules.malladi_projection.output.errors,
    output:
        **malladi_figure_outputs(),
    params:
        figures=list(MALLADI_FIGURES),
        claims=config["claims"],  # for the captions (report/malladi/F*.rst), which state the verdict rule
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
