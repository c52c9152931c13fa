# Task vectors through the eNTK (Sun & Raskutti 2026; issue #11, figure F13): one task vector per task
# and method (real FT, linearized FT) with the same budget, task arithmetic over a λ grid, and the
# cross-task eNTK diagnostics that should predict interference; the figure rule computes the intervals
# and verdicts of F13's claims from the per-example correctness (kernelft.taskvec.claims).

from kernelft.core.claims import METHOD as CLAIMS_METHOD


add_figures("F13_task_vectors")
TARGETS.append(f"{RESULTS}/tables/F13_task_vectors_claims.csv")


rule taskvec_finetune:
    input:
        train=lambda wc: taskvec_train(wc.task),
        test=rules.data_task.output.test,
    output:
        # one job per task for both methods: the model loads once (~8 s of imports and loading per job)
        ft=taskvec_file("{task}", "ft", "vector.pt"),
        linearized=taskvec_file("{task}", "linearized", "vector.pt"),
        curve=taskvec_file("{task}", "curves.csv"),
    params:
        model=taskvec_model(),
        task=lambda wc: task_config(wc.task),
        taskvec=taskvec_finetune_params(),
        seed=config["seed"],
    log:
        log_file("taskvec_finetune", "{task}"),
    benchmark:
        bench_file("taskvec_finetune", "{task}")
    priority: 3  # the longest chains (F13, F6-F7) start first: the run must not end on them (#20)
    threads: 1
    resources:
        # measured: ~1.7 GB peak RSS for the linearized run (kernelft.training.linearize)
        mem_mb=3000,
        runtime=30,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/taskvec/finetune.py"


rule taskvec_entk:
    input:
        train=[taskvec_train(task) for task in taskvec_tasks()],
    output:
        kernel=taskvec_file("entk.npz"),
        diagnostics=taskvec_file("kernel_diagnostics.csv"),
    params:
        model=taskvec_model(),
        tasks={task: task_config(task) for task in taskvec_tasks()},
        taskvec=taskvec_entk_params(),
        max_memory_gb=config["entk"]["max_memory_gb"],
        seed=config["seed"],
    log:
        log_file("taskvec_entk", "entk"),
    benchmark:
        bench_file("taskvec_entk", "entk")
    threads: 1
    resources:
        mem_mb=memory_mb(config["entk"]["max_memory_gb"]),
        runtime=30,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/taskvec/entk.py"


rule taskvec_arithmetic:
    input:
        # both methods in one job: the model loads and the test sets are encoded once (~6 s of a job)
        ft=[taskvec_file(task, "ft", "vector.pt") for task in taskvec_tasks()],
        linearized=[taskvec_file(task, "linearized", "vector.pt") for task in taskvec_tasks()],
        test=[test_file(task) for task in taskvec_tasks()],
    output:
        accuracy=expand(taskvec_file("arithmetic", "{method}_accuracy.csv"), method=TASKVEC_METHODS),
        disentanglement=expand(taskvec_file("arithmetic", "{method}_disentanglement.csv"), method=TASKVEC_METHODS),
        # per-example correctness of every evaluation, the scores the F13 intervals resample
        correct=expand(taskvec_file("arithmetic", "{method}_correct.parquet"), method=TASKVEC_METHODS),
    params:
        model=taskvec_model(),
        tasks={task: task_config(task) for task in taskvec_tasks()},
        taskvec=taskvec_arithmetic_params(),
        seed=config["seed"],
    log:
        log_file("taskvec_arithmetic", "arithmetic"),
    benchmark:
        bench_file("taskvec_arithmetic", "arithmetic")
    priority: 3  # the longest chains (F13, F6-F7) start first: the run must not end on them (#20)
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/taskvec/arithmetic.py"


rule figure_task_vectors:
    input:
        accuracy=rules.taskvec_arithmetic.output.accuracy,
        disentanglement=rules.taskvec_arithmetic.output.disentanglement,
        correct=rules.taskvec_arithmetic.output.correct,
        diagnostics=rules.taskvec_entk.output.diagnostics,
    output:
        **figure("F13_task_vectors", caption="../report/taskvec/F13.rst", category="F13 task vectors"),
        # one row per claim with its interval and verdict (kernelft.taskvec.claims)
        claims=report(
            f"{RESULTS}/tables/F13_task_vectors_claims.csv",
            caption="../report/taskvec/F13.rst",
            category="F13 task vectors",
            labels={"figure": "F13_task_vectors", "kind": "claims"},
        ),
    params:
        taskvec=taskvec_figure_params(),
        claims=config["claims"],
        seed=config["seed"],
        method=CLAIMS_METHOD,
    log:
        log_file("figures", "F13_task_vectors"),
    benchmark:
        bench_file("figures", "F13_task_vectors")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/taskvec/figure.py"
