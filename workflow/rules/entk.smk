# eNTK of the pretrained model: K(train, train) and K(test, train) per task, n and data seed.
# Each kernel is split into blocks of `entk.block_size` examples, one job per block (a cluster runs
# them in parallel; a finished block is never recomputed), then merged with f at θ0.


rule entk_block:
    input:
        train=train_file("{task}", "{n}", "{seed}"),
        test=rules.data_task.output.test,
    output:
        block=f"{RESULTS}/entk/{{task}}/n{{n}}-seed{{seed}}.blocks/{{part}}-{{i}}-{{j}}.npz",
    params:
        model=model_config("entk"),
        task=lambda wc: task_config(wc.task),
        entk=entk_params(),
        test_rows=lambda wc: entk_test_size() if wc.part == "test" else None,  # train blocks never read it
        seed=config["seed"],
    wildcard_constraints:
        part="train|test",
        i=r"\d+",
        j=r"\d+",
    log:
        log_file("entk_block", "{task}/n{n}-seed{seed}/{part}-{i}-{j}"),
    benchmark:
        bench_file("entk_block", "{task}/n{n}-seed{seed}/{part}-{i}-{j}")
    threads: 2
    resources:
        mem_mb=memory_mb(config["entk"]["max_memory_gb"]),
        runtime=60,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/entk/block.py"


rule entk:
    input:
        unpack(entk_block_files),
        train_sample=train_file("{task}", "{n}", "{seed}"),
        test_sample=rules.data_task.output.test,
    output:
        kernel=f"{RESULTS}/entk/{{task}}/n{{n}}-seed{{seed}}.npz",
    params:
        model=model_config("entk"),
        task=lambda wc: task_config(wc.task),
        entk=pick(config["entk"], "kind"),
        test_rows=entk_test_size(),
        seed=config["seed"],
    log:
        log_file("entk", "{task}/n{n}-seed{seed}"),
    benchmark:
        bench_file("entk", "{task}/n{n}-seed{seed}")
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/entk/merge.py"




rule spectrum:
    input:
        kernel=rules.entk.output.kernel,
    output:
        spectrum=f"{RESULTS}/spectrum/{{task}}/n{{n}}-seed{{seed}}.csv",
    params:
        spectrum=config["spectrum"],
        seed=config["seed"],
    log:
        log_file("spectrum", "{task}/n{n}-seed{seed}"),
    benchmark:
        bench_file("spectrum", "{task}/n{n}-seed{seed}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/entk/spectrum.py"
