# kernelft: the kernel (eNTK) view of fine-tuning, from data to figures.
# `snakemake` runs everything with the default profile (profiles/default); see README.md.

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# The library lives in src/: put it on the path of this process and of every job (local, --use-conda,
# SLURM), so a checkout runs without `pip install -e .` as well.
SRC = os.path.join(workflow.basedir, "src")
if os.path.isdir(SRC):
    sys.path.insert(0, SRC)
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


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
