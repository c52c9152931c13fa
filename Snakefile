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


# glibc gives every large tensor fresh mmap'ed pages and returns them on free, so each eNTK block pays
# page faults again (sys time): keeping freed memory in the heap made the K(SGD) + K(A-SignGD) of a
# k = 64 run 27 % faster (48.8 s -> 35.4 s on one core) for 4 % more peak RSS. Jobs inherit it; a
# GLIBC_TUNABLES of your own wins.
os.environ.setdefault(
    "GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
    ":glibc.malloc.top_pad=1073741824"
)


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/entk.smk"
include: "workflow/rules/earlystop.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/vi.smk"
include: "workflow/rules/malladi.smk"
include: "workflow/rules/lpft.smk"
include: "workflow/rules/taskvec.smk"


rule all:
    input:
        all_targets(),
    default_target: True
