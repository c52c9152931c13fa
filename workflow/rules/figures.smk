# Figures: gather the per-run tables into one CSV per figure, then draw PNG + PDF.

add_figures("F5_entk_spectrum", "F7_learning_curves")


rule figure_spectrum:
    input:
        spectra=spectrum_files(),
        pool_spectra=earlystop_files("spectrum.csv"),
    output:
        **figure("F5_entk_spectrum", caption="../report/F5.rst", category="F5-F7 early stopping"),
    log:
        log_file("figures", "F5_entk_spectrum"),
    benchmark:
        bench_file("figures", "F5_entk_spectrum")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/figure_spectrum.py"


rule figure_learning_curves:
    input:
        curves=stopped_finetune_files("csv"),
        kernel_curves=earlystop_files("curves.csv"),
    output:
        **figure("F7_learning_curves", caption="../report/F7.rst", category="F5-F7 early stopping"),
    log:
        log_file("figures", "F7_learning_curves"),
    benchmark:
        bench_file("figures", "F7_learning_curves")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/figure_learning_curves.py"
