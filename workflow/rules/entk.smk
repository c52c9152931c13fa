# eNTK of the pretrained model: K(train, train) and K(test, train) per task, n and data seed.


rule entk:
    input:
        train=train_file("{task}", "{n}", "{seed}"),
        test=rules.data_task.output.test,
    output:
        kernel=f"{RESULTS}/entk/{{task}}/n{{n}}-seed{{seed}}.npz",
    params:
        model=model_config(),
        task=lambda wc: task_config(wc.task),
        entk=config["entk"],
        seed=config["seed"],
    log:
        log_file("entk", "{task}/n{n}-seed{seed}"),
    benchmark:
        bench_file("entk", "{task}/n{n}-seed{seed}")
    threads: 2
    resources:
        mem_mb=lambda wc: int(1024 * (config["entk"]["max_memory_gb"] + 2)),
        runtime=60,
    script:
        "../scripts/entk.py"
