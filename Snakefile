# kernelft: the kernel (eNTK) view of fine-tuning, from data to figures.
# `snakemake` runs everything with the default profile (profiles/default); see README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/entk.smk"
include: "workflow/rules/spectrum.smk"
include: "workflow/rules/earlystop.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/vi.smk"
include: "workflow/rules/malladi.smk"
include: "workflow/rules/lpft.smk"
include: "workflow/rules/taskvec.smk"


rule all:
    input:
        all_targets(),
    default_target: True
