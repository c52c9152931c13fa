# Fine-tuning over tasks, sample sizes and data seeds with the one runner (kernelft.training.runner). Not part
# of the default target (the stages run the runner in their own rules): `snakemake finetune_sweep` runs
# the `finetune` section's sweep, e.g. to compare methods on a new task.


rule finetune:
    input:
        train=train_file("{task}", "{n}", "{seed}"),
        test=rules.data_task.output.test,
    output:
        curve=f"{RESULTS}/finetune/{{task}}/{{method}}/n{{n}}-seed{{seed}}.csv",
    params:
        model=model_config(),
        task=lambda wc: task_config(wc.task),
        finetune=finetune_params(),
        seed=config["seed"],
    log:
        log_file("finetune", "{task}/{method}/n{n}-seed{seed}"),
    benchmark:
        bench_file("finetune", "{task}/{method}/n{n}-seed{seed}")
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/finetune/run.py"


rule finetune_sweep:
    input:
        curve_files(),
