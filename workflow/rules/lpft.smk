# LP-FT through the NTK (Tomihari & Sato 2024; issue #8, figures F9-F12): FT, LP, LP-FT, LoRA and
# LP-LoRA with a linear head, trained on one ID task (default: airline tweets) and tested on it and on each
# OOD task (default: the other tweet collections); head norm and feature change over training, the feature
# metrics at the selected step, the eNTK split at the start of FT, ID vs OOD accuracy, and calibration
# before/after temperature scaling. The claims of the paper (LP-FT keeps OOD accuracy and changes the features less
# than FT, LP-LoRA than LoRA; LP-FT's ECE worse before, alike after temperature scaling) are decided in
# lpft_summary from paired two-way bootstrap intervals over seeds and test examples (kernelft.lpft.claims).

from kernelft.core.claims import METHOD as CLAIMS_METHOD

add_figures(*LPFT_FIGURES.values())
TARGETS.append(f"{RESULTS}/tables/lpft_table.csv")
TARGETS.append(f"{RESULTS}/tables/lpft_claims.csv")

LPFT = config["lpft"]


rule lpft_run:
    input:
        train=train_file(LPFT["id_task"], LPFT["n"], "{seed}"),
        test=test_file(LPFT["id_task"]),
        pool=pool_file(LPFT["id_task"]),
        ood=[test_file(task) for task in lpft_ood_tasks()],
    output:
        curve=lpft_file("runs/{method}/seed{seed}.csv"),
        logits=lpft_file("runs/{method}/seed{seed}.npz"),
    wildcard_constraints:
        method="|".join(LPFT_METHODS),
    params:
        model=lpft_model(),
        task=task_config(LPFT["id_task"]),
        lpft=lambda wc: lpft_run_params(wc.method),
        seed=config["seed"],
    log:
        log_file("lpft_run", "{method}/seed{seed}"),
    benchmark:
        bench_file("lpft_run", "{method}/seed{seed}")
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/lpft/run.py"


rule lpft_ntk:
    input:
        train=train_file(LPFT["id_task"], LPFT["n"], "{seed}"),
    output:
        ntk=lpft_file("ntk/seed{seed}.csv"),
    params:
        model=lpft_model(),
        task=task_config(LPFT["id_task"]),
        lpft=lpft_ntk_params(),
        methods=[m for m in LPFT["methods"] if m != "lp"],
        max_memory_gb=config["entk"]["max_memory_gb"],
        seed=config["seed"],
    log:
        log_file("lpft_ntk", "seed{seed}"),
    benchmark:
        bench_file("lpft_ntk", "seed{seed}")
    threads: 1
    resources:
        mem_mb=memory_mb(config["entk"]["max_memory_gb"]),
        runtime=20,
        gpu=gpus(),
    conda:
        CONDA_ENV
    script:
        "../scripts/lpft/ntk.py"


rule lpft_summary:
    input:
        curves=lpft_runs("csv"),
        logits=lpft_runs("npz"),
        ntk=[lpft_file(f"ntk/seed{seed}.csv") for seed in LPFT["seeds"]],
    output:
        curves=lpft_file("curves.csv"),
        runs=lpft_file("runs.csv"),
        ood=lpft_file("ood.csv"),
        ntk=lpft_file("ntk.csv"),
        reliability=lpft_file("reliability.csv"),
        intervals=lpft_file("intervals.csv"),
        table=f"{RESULTS}/tables/lpft_table.csv",
        claims=f"{RESULTS}/tables/lpft_claims.csv",
    params:
        ood_tasks=lpft_ood_tasks(),
        claims=config["claims"],
        seed=config["seed"],
    log:
        log_file("lpft_summary", "lpft"),
    benchmark:
        bench_file("lpft_summary", "lpft")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/lpft/summary.py"


for _number, _stem in LPFT_FIGURES.items():

    rule:
        name:
            f"figure_lpft_{_number}"
        input:
            curves=rules.lpft_summary.output.curves,
            runs=rules.lpft_summary.output.runs,
            ood=rules.lpft_summary.output.ood,
            ntk=rules.lpft_summary.output.ntk,
            reliability=rules.lpft_summary.output.reliability,
            intervals=rules.lpft_summary.output.intervals,
            claims=rules.lpft_summary.output.claims,
        output:
            **figure(_stem, caption=f"../report/lpft/{_number}.rst", category="F9-F12 LP-FT"),
        params:
            figure=_stem,
            id_task=LPFT["id_task"],
            lpft=pick(LPFT, "seeds", "test_size", "probe_size", "val_size"),
            claims=config["claims"],
            interval_method=CLAIMS_METHOD,
        log:
            log_file("figures", _stem),
        benchmark:
            bench_file("figures", _stem)
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            CONDA_ENV
        script:
            "../scripts/lpft/figures.py"
