# Validation, path helpers and input functions shared by all rules.

from snakemake.utils import validate

from kernelft.core.config import SCHEMA_PATH, check_config, seeds_for, validate_schema


# Our own schema pass first: its messages name the key (e.g. "config key finetune.sample_sizes.1");
# Snakemake's validate() then fills in the defaults.
validate_schema(config)
validate(config, str(SCHEMA_PATH))
check_config(config)

RESULTS = "results"
FIGURES = "figures"

# A rule's `conda: CONDA_ENV` puts it in envs/kernelft.yaml under --use-conda / --sdm conda, and is
# None otherwise: Snakemake's --archive packs the conda environments of rules that name one, which
# needs conda, so the directive must stay empty where conda is not in use.
CONDA_ENV = (
    "../../envs/kernelft.yaml"
    if "conda" in {str(method).lower() for method in workflow.deployment_settings.deployment_method}
    else None
)


wildcard_constraints:
    task="[A-Za-z0-9_.-]+",
    n=r"\d+",
    seed=r"\d+",


def log_file(rule_name, stem):
    return f"{RESULTS}/logs/{rule_name}/{stem}.log"


def bench_file(rule_name, stem):
    return f"{RESULTS}/benchmarks/{rule_name}/{stem}.tsv"


def task_config(task):
    """The `tasks.<task>` entry with the task's own name as `id` (its `name` is the hub config name)."""
    return {"id": task, **config["tasks"][task]}


def model_config():
    """The `model` section for a rule's params; `device: auto` is left out (the job resolves it), so
    runs made before the key existed stay up to date."""
    section = dict(config["model"])
    if section.get("device", "auto") == "auto":
        section.pop("device", None)
    return section


def gpus():
    """GPUs per eNTK or fine-tuning job (`resources: gpu`; profiles/slurm turns it into --gpus): one
    when `model.device` is cuda, else none (override per rule with --set-resources RULE:gpu=N)."""
    return 1 if config["model"].get("device") == "cuda" else 0


def train_file(task, n, seed):
    return f"{RESULTS}/data/{task}/train/n{n}-seed{seed}.parquet"


def entk_files():
    return [
        f"{RESULTS}/entk/{task}/n{n}-seed{seed}.npz"
        for task in config["entk"]["tasks"]
        for n in config["entk"]["sample_sizes"]
        for seed in config["data"]["seeds"]
    ]


def spectrum_files():
    return [path.replace("/entk/", "/spectrum/").replace(".npz", ".csv") for path in entk_files()]


def curve_files():
    section = config["finetune"]
    return [
        f"{RESULTS}/finetune/{task}/{section['method']}/n{n}-seed{seed}.csv"
        for task in section["tasks"]
        for n in section["sample_sizes"]
        for seed in config["data"]["seeds"]
    ]


def earlystop_config():
    """The `earlystop` section without its task list (a new task must not rerun the others)."""
    return {key: value for key, value in config["earlystop"].items() if key != "tasks"}


def earlystop_file(task, name):
    return f"{RESULTS}/earlystop/{task}/{name}"


def earlystop_files(name):
    return [earlystop_file(task, name) for task in config["earlystop"]["tasks"]]


def stopped_finetune_files(suffix):
    """Real fine-tuning runs stopped at T̂: one per task, size in earlystop.finetune_sizes and rep."""
    section = config["earlystop"]
    return [
        earlystop_file(task, f"finetune/n{n}-rep{rep}.{suffix}")
        for task in section["tasks"]
        for n in section["finetune_sizes"]
        for rep in range(section["finetune_reps"])
    ]


def figure(stem, caption=None, category=None):
    """The PNG and PDF of a figure and its CSV table; with ``caption`` (an rst path relative to the
    rule file) the PNG and the table go into `snakemake --report`, labelled by figure and kind."""
    png, table = f"{FIGURES}/{stem}.png", f"{RESULTS}/tables/{stem}.csv"
    if caption is not None:
        category = category or stem.split("_")[0]
        png = report(png, caption=caption, category=category, labels={"figure": stem, "kind": "figure"})
        table = report(table, caption=caption, category=category, labels={"figure": stem, "kind": "table"})
    return {"png": png, "pdf": f"{FIGURES}/{stem}.pdf", "table": table}


# The default target: each stage's rule file adds its figures and headline files here.
TARGETS = []


def add_figures(*stems):
    for stem in stems:
        TARGETS.extend(figure(stem).values())


def all_targets():
    return TARGETS
