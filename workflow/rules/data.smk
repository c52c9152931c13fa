# Data: build each task's fixed test set and training pool, then seeded nested training samples and
# the k-shot dev set beside each (LM-BFF: the next n / C examples of each label).


rule data_task:
    output:
        test=test_file("{task}"),
        pool=pool_file("{task}"),
    params:
        task=lambda wc: task_config(wc.task),
        test_size=config["data"]["test_size"],
        seed=lambda wc: test_seed(wc.task),
    log:
        log_file("data_task", "{task}"),
    benchmark:
        bench_file("data_task", "{task}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/data/task.py"


rule data_train_sample:
    input:
        pool=rules.data_task.output.pool,
    output:
        train=train_file("{task}", "{n}", "{seed}"),
    params:
        num_classes=lambda wc: len(config["tasks"][wc.task]["labels"]),
    log:
        log_file("data_train_sample", "{task}/n{n}-seed{seed}"),
    benchmark:
        bench_file("data_train_sample", "{task}/n{n}-seed{seed}")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/data/train_sample.py"


use rule data_train_sample as data_dev_sample with:
    output:
        dev=dev_file("{task}", "{n}", "{seed}"),
    log:
        log_file("data_dev_sample", "{task}/n{n}-seed{seed}"),
    benchmark:
        bench_file("data_dev_sample", "{task}/n{n}-seed{seed}")
