# Validation, path helpers, input functions and params slices shared by all rules.
#
# Params hold exactly what a job's outputs depend on: each rule takes its config keys through one of the
# slice functions below (never a whole section), so a finished job reruns only when one of its keys
# changes, and adding a task, a sample size, a seed, a ρ or a pair plans only the new jobs and the
# summaries that read them.

import os

from snakemake.utils import validate

from kernelft.core.config import SCHEMA_PATH, check_config, seeds_for, validate_schema
from kernelft.lpft import METHODS as LPFT_METHODS
from kernelft.taskvec import METHODS as TASKVEC_METHODS
from kernelft.training import PROTOCOL_KEYS, set_protocol_keys
from kernelft.text.checkpoints import check_templates
from kernelft.vi import FIT_KEYS as VI_FIT_KEYS


# Our own schema pass first: its messages name the key (e.g. "config key finetune.sample_sizes.1");
# Snakemake's validate() then fills in the defaults, and check_config makes the cross-key checks;
# check_templates reads a local model's config.json to check the templates against its family.
validate_schema(config)
validate(config, str(SCHEMA_PATH))
check_config(config)
check_templates(config)

RESULTS = "results"
FIGURES = "figures"

# A rule's `conda: CONDA_ENV` puts it in envs/kernelft.yaml under --use-conda / --sdm conda, and is
# None otherwise: Snakemake's --archive packs the conda environments of rules that name one, which
# needs conda, so the directive must stay empty where conda is not in use (README, "Linting").
CONDA_ENV = (
    "../../envs/kernelft.yaml"
    if "conda" in {str(method).lower() for method in workflow.deployment_settings.deployment_method}
    else None
)


wildcard_constraints:
    task="[A-Za-z0-9_.-]+",
    n=r"\d+",
    seed=r"\d+",
    head="prompt|linear",
    k=r"\d+",


# --- generic helpers --------------------------------------------------------------------------------


def log_file(rule_name, stem):
    return os.path.join(RESULTS, "logs", rule_name, f"{stem}.log")


def bench_file(rule_name, stem):
    return os.path.join(RESULTS, "benchmarks", rule_name, f"{stem}.tsv")


def pick(section, *keys):
    """The keys of a config section that a job's outputs depend on (missing optional keys left out)."""
    return {key: section[key] for key in keys if key in section}


def omit(section, *keys):
    """A config section without the keys that only list jobs (tasks, sizes, seeds, ...)."""
    return {key: value for key, value in section.items() if key not in keys}


UNSET_TASK_KEYS = ("text_column2", "test_split", "test_path", "max_length")
"""Task keys left out of params while null (their default), so runs made before they existed stay up to date."""


def task_config(task):
    """The `tasks.<task>` entry with the task's own name as `id` (its `name` is the hub config name)."""
    entry = config["tasks"][task]
    return {"id": task, **{k: v for k, v in entry.items() if not (k in UNSET_TASK_KEYS and v is None)}}


def model_config(stage=None, **overrides):
    """The `model` section for a rule's params, with the `model` keys of section ``stage`` (its own model,
    e.g. GPT-Neo for early stopping) and a stage's ``overrides`` (head, max_length); `device: auto` is left
    out (the job resolves it), so runs made before the key existed stay up to date."""
    section = {**config["model"], **(config[stage].get("model", {}) if stage else {}), **overrides}
    if section.get("device", "auto") == "auto":
        section.pop("device", None)
    return section


def gpus():
    """GPUs per job that runs a model (`resources: gpu` of every such rule, checked over the paper DAG by
    tests/workflow/test_paper.py; profiles/slurm turns it into --gpus): one when `model.device` is cuda,
    else none (override with --set-resources RULE:gpu=N per rule)."""
    return 1 if config["model"].get("device") == "cuda" else 0


def memory_mb(max_memory_gb, extra_gb=2):
    """`mem_mb` of a job whose eNTK works within ``max_memory_gb``, plus the model and data."""
    return int(1024 * (max_memory_gb + extra_gb))


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


# --- data and eNTK ----------------------------------------------------------------------------------


def train_file(task, n, seed):
    return f"{RESULTS}/data/{task}/train/n{n}-seed{seed}.parquet"


def test_file(task):
    return f"{RESULTS}/data/{task}/test.parquet"


def pool_file(task):
    return f"{RESULTS}/data/{task}/pool.parquet"


def dev_file(task, n, seed):
    """The k-shot dev set beside the training sample of size n and seed (rule data_dev_sample)."""
    return f"{RESULTS}/data/{task}/dev/n{n}-seed{seed}.parquet"


def has_test_split(task):
    entry = config["tasks"][task]
    return bool(entry.get("test_split") or entry.get("test_path"))


def test_seed(task):
    """The seed of a task's test draw: `data.test_seed` (default `seed`) from its own test split, else `seed`."""
    if has_test_split(task) and config["data"].get("test_seed") is not None:
        return config["data"]["test_seed"]
    return config["seed"]


def task_max_length(task, default):
    """A task's `max_length` when it sets one (LM-BFF's 256 for MNLI), else the stage's ``default``."""
    return config["tasks"][task].get("max_length") or default


def entk_params():
    """What an eNTK block depends on: the kernel kind, parameter set and projection, the blocking and the
    memory budget (not the task or size lists, which only say which kernels to make)."""
    return pick(config["entk"], "kind", "params", "projection_dim", "projection", "block_size", "max_memory_gb")


def entk_test_size():
    """The test rows of K(test, train): `entk.test_size`, null = all `data.test_size` rows."""
    size = config["entk"]["test_size"]
    return config["data"]["test_size"] if size is None else min(size, config["data"]["test_size"])


def entk_block_files(wildcards):
    """The block files of one kernel: the upper triangle of train x train, all of test x train."""
    from kernelft.entk.blocks import block_pairs

    size, n = config["entk"]["block_size"], int(wildcards.n)
    parts = {
        "train": block_pairs(n, size, config["entk"]["kind"]),
        "test": block_pairs(entk_test_size(), size, config["entk"]["kind"], n2=n) if entk_test_size() else [],
    }
    stem = f"{RESULTS}/entk/{wildcards.task}/n{wildcards.n}-seed{wildcards.seed}.blocks"
    return {part: [f"{stem}/{part}-{i}-{j}.npz" for i, j in pairs] for part, pairs in parts.items()}


def spectrum_files():
    """The spectrum of every eNTK of the `entk` section (task, n, data seed): what F5 draws."""
    return [
        f"{RESULTS}/spectrum/{task}/n{n}-seed{seed}.csv"
        for task in config["entk"]["tasks"]
        for n in config["entk"]["sample_sizes"]
        for seed in config["data"]["seeds"]
    ]


# --- fine-tuning sweep (rule finetune) ----------------------------------------------------------------


def finetune_params():
    """The runner's settings of the `finetune` sweep; its task, size and method lists only name jobs."""
    section = omit(config["finetune"], "tasks", "sample_sizes", "method", *PROTOCOL_KEYS)
    return {**section, **set_protocol_keys(config["finetune"])}


def curve_files():
    section = config["finetune"]
    return [
        f"{RESULTS}/finetune/{task}/{section['method']}/n{n}-seed{seed}.csv"
        for task in section["tasks"]
        for n in section["sample_sizes"]
        for seed in config["data"]["seeds"]
    ]


# --- early stopping (F5-F7) -----------------------------------------------------------------------------

EARLYSTOP_SWEEP_KEYS = (
    "sizes", "n_test", "n_rep", "eta_scale", "max_steps", "grid_points", "sigma2", "r2", "r2_methods", "rcond",
    "val_fraction", "patience", "test_targets", "level",
)
"""The `earlystop` keys of the kernel-GD sweep (kernelft.earlystop.study.real_rate_study, sweep_draws)."""


def earlystop_sweep_params():
    return pick(config["earlystop"], *EARLYSTOP_SWEEP_KEYS)


def earlystop_synthetic_params():
    return pick(config["earlystop"], "synthetic", *EARLYSTOP_SWEEP_KEYS)


def earlystop_finetune_params():
    """Real FT stopped at T̂ reads its step and T̂ from the sweep's outputs; of the section only its budget."""
    return pick(config["earlystop"], "finetune_steps", "finetune_eval_every")


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


# --- kernel vs fine-tuning (F1-F4) -------------------------------------------------------------------------

MALLADI = f"{RESULTS}/malladi"

MALLADI_FIGURES = {
    "F1": "F1_kernel_vs_ft",
    "F2": "F2_prompt_vs_linear",
    "F3": "F3_kernel_change",
    "F4": "F4_lora_projection",
}


def malladi_run_dir(task, head, k, seed):
    return f"{MALLADI}/{task}/{head}/k{k}-seed{seed}"


def malladi_run_file(name):
    """A file of one run, with wildcards {task}, {head}, {k} and {seed}."""
    return f"{malladi_run_dir('{task}', '{head}', '{k}', '{seed}')}/{name}"


def malladi_files(name, seeds=None, shots=None, heads=None):
    """One file per run (task, head, k, seed) of the `malladi` section (the seeds of each k: seeds_for);
    ``seeds``, ``shots`` and ``heads`` limit the seeds, the k and the heads; ``{optimizer}`` in ``name``
    expands to every FT optimizer."""
    section = config["malladi"]
    return [
        f"{malladi_run_dir(task, head, k, seed)}/{name.format(optimizer=optimizer)}"
        for task in section["tasks"]
        for head in (section["heads"] if heads is None else heads)
        for k in (section["shots"] if shots is None else shots)
        for seed in seeds_for(section, k)
        if seeds is None or seed in seeds
        for optimizer in (section["optimizers"] if "{optimizer}" in name else [None])
    ]


def malladi_linearized_files(suffix=".csv"):
    section = config["malladi"]
    return malladi_files(f"linearized-{{optimizer}}{suffix}", section["linearized_seeds"], section["linearized_shots"],
                         section["linearized_heads"])


def malladi_signgd_files():
    return malladi_files("signgd_kernel.npz") if "adam" in config["malladi"]["optimizers"] else []


def malladi_kernel_outputs():
    """The kernels of one run, all from one job: K(SGD), K(A-SignGD) when Adam is among the optimizers (the
    same per-example gradients serve both), and the LoRA-parameter K(SGD)."""
    outputs = {"kernel": malladi_run_file("kernel.npz"), "lora_kernel": malladi_run_file("lora_kernel.npz")}
    if "adam" in config["malladi"]["optimizers"]:
        outputs["signgd_kernel"] = malladi_run_file("signgd_kernel.npz")
    return outputs


def malladi_model(head, task):
    """`model` with the run's head and the task's or the stage's max_length."""
    return model_config(head=head, max_length=task_max_length(task, config["malladi"]["max_length"]))


def malladi_train(wildcards):
    """The k-shot sample: n = k x (number of classes) examples, balanced over labels."""
    n = int(wildcards.k) * len(config["tasks"][wildcards.task]["labels"])
    return train_file(wildcards.task, n, wildcards.seed)


def malladi_common(head=None):
    """What every kernel or FT job of the stage reads from the `malladi` section; for a linear-head run with
    `malladi.finetune.init_head: probe`, also that (its kernels start from the probe's head)."""
    common = pick(config["malladi"], "test_size", "max_memory_gb")
    if head == "linear" and config["malladi"]["finetune"]["init_head"] == "probe":
        common["init_head"] = "probe"
    return common


def malladi_finetune_params(head, method):
    """The FT settings of each optimizer, by optimizer: its learning rate (or grid) and the shared steps (or
    epochs), batch, loss and the protocol keys that are set, as they apply to the run: `init_head` to linear
    heads only (a prompt head has no head to probe), `dropout` not to the linearized model (its Taylor
    expansion is of the eval-mode network)."""
    section = config["malladi"]["finetune"]
    protocol = set_protocol_keys(section)
    if head != "linear":
        protocol.pop("init_head", None)
    if method == "linearized":
        protocol.pop("dropout", None)
    return {
        optimizer: {
            "optimizer": optimizer,
            "lr": section["learning_rates"][optimizer],
            **pick(section, "epochs", "steps", "batch_size", "loss"),
            **({"eval_every": section["eval_every"]} if section.get("eval_every") else {}),
            **protocol,
        }
        for optimizer in config["malladi"]["optimizers"]
    }


def malladi_finetune_outputs(method):
    """The files of one run's FT (``ft``) or linearized job, every optimizer's: the curve, the selected step's
    test logits and, for FT, K(SGD) of the fine-tuned model (``sgd_curve``, ``sgd_predictions``, ...)."""
    suffixes = {"curve": ".csv", "predictions": "_test.npz"}
    if method == "ft":
        suffixes["kernel_after"] = "_kernel.npz"
    return {
        f"{optimizer}_{name}": malladi_run_file(f"{method}-{optimizer}{suffix}")
        for optimizer in config["malladi"]["optimizers"]
        for name, suffix in suffixes.items()
    }


def malladi_uses_dev():
    """Whether a run reads the k-shot dev set: a learning-rate grid or best-dev selection."""
    section = config["malladi"]["finetune"]
    return section["select"] == "best_dev" or any(
        isinstance(section["learning_rates"][optimizer], list) for optimizer in config["malladi"]["optimizers"])


def malladi_finetune_inputs(wildcards):
    """The k-shot sample, the test set and, when a run selects on it, the k-shot dev set."""
    inputs = {"train": malladi_train(wildcards), "test": test_file(wildcards.task)}
    if malladi_uses_dev():
        n = int(wildcards.k) * len(config["tasks"][wildcards.task]["labels"])
        inputs["dev"] = dev_file(wildcards.task, n, wildcards.seed)
    return inputs


def malladi_lora_params():
    """The LoRA kernel's settings; `head` only when set (runs made before the key existed stay up to date)."""
    lora = config["malladi"]["lora"]
    return {k: v for k, v in lora.items() if k != "head" or v}


def malladi_solver_params():
    return pick(config["malladi"], "solver", "ridge", "adjust_for_init", "asymmetric_solver")


def malladi_projection_train(wildcards):
    section = config["malladi"]
    task = section["projection"]["task"]
    n = section["shots"][0] * len(config["tasks"][task]["labels"])
    return train_file(task, n, seeds_for(section, section["shots"][0])[0])


def malladi_figure_outputs():
    """PNG, PDF and table of F1-F4 as outputs named F1_png, F1_pdf, F1_table, ..."""
    return {
        f"{number}_{key}": path
        for number, stem in MALLADI_FIGURES.items()
        for key, path in figure(
            stem, caption=f"../report/malladi/{number}.rst", category="F1-F4 kernel vs fine-tuning"
        ).items()
    }


# --- LP-FT (F9-F12) ----------------------------------------------------------------------------------------

LPFT_FIGURES = {
    "F9": "F9_lpft_feature_change",
    "F10": "F10_lpft_ntk",
    "F11": "F11_lpft_id_ood",
    "F12": "F12_lpft_calibration",
}


def lpft_file(name):
    return f"{RESULTS}/lpft/{name}"


def lpft_model():
    """`model` with the stage's head (linear: LP-FT is about a linear head) and max_length."""
    return model_config(head="linear", max_length=config["lpft"]["max_length"])


def lpft_ood_tasks():
    return config["lpft"]["ood_tasks"]


def lpft_run_params(method):
    """The `lpft` keys of one run (kernelft.lpft.stage.run_params): not the method and seed lists (a new seed
    must not rerun the others), not the NTK's kernel_size, only ``method``'s learning rate and batch size, the
    LoRA and probe keys only for the methods that use them (a new LoRA rank must not rerun FT), and the keys
    added since the stage's first runs (epochs, the protocol, several OOD tasks) only where set, so runs made
    before them stay up to date."""
    from kernelft.lpft.stage import run_params

    return run_params(config["lpft"], method)


def lpft_ntk_params():
    """The NTK split at the start of FT: the LoRA and probe settings of the runs, and its kernel size."""
    section = config["lpft"]
    return {
        **pick(section, "kernel_size", "lora_rank", "lora_alpha", "lp_cv", "lp_C"),
        "learning_rates": pick(section["learning_rates"], "lplora"),
    }


def lpft_runs(ext):
    section = config["lpft"]
    return [lpft_file(f"runs/{method}/seed{seed}.{ext}") for method in section["methods"] for seed in section["seeds"]]


# --- task vectors (F13) -----------------------------------------------------------------------------------


def taskvec_tasks():
    """The tasks of `taskvec.pairs`, each once, in order of appearance."""
    return list(dict.fromkeys(t for pair in config["taskvec"]["pairs"] for t in pair["tasks"]))


def taskvec_model():
    """The model section for this stage: the prompt head and taskvec.max_length."""
    return model_config("taskvec", head="prompt", max_length=config["taskvec"]["max_length"])


def taskvec_finetune_params():
    """One task's vectors depend on its FT budget (and its curve on n_curve), not on the pairs or the λ grid."""
    return pick(config["taskvec"], "params", "optimizer", "lr", "steps", "batch_size", "loss", "n_curve")


def taskvec_entk_params():
    return pick(config["taskvec"], "pairs", "kernel_size", "params", "top_k")


def taskvec_arithmetic_params():
    return pick(config["taskvec"], "pairs", "n_test", "lambdas", "negation_lambdas", "eval_dtype")


def taskvec_figure_params():
    """What F13's intervals, verdicts and caption read of the stage (the claims themselves: config["claims"])."""
    return pick(config["taskvec"], "pairs", "similar_pair", "n_test", "eval_dtype", "lambdas", "negation_lambdas")


def taskvec_file(*parts):
    return os.path.join(RESULTS, "taskvec", *parts)


def taskvec_train(task):
    return train_file(task, config["taskvec"]["n_train"], config["data"]["seeds"][0])


# --- variable importance (F8, F14) --------------------------------------------------------------------------

VI = f"{RESULTS}/vi"


def vi_fit_params(*study):
    """The learners' settings (kernelft.vi.FIT_KEYS) and, given ``study``, the keys of that study; the
    ρ and n grids only name jobs."""
    return pick(config["vi"], *VI_FIT_KEYS, *study)


def vi_cell_paths():
    """Raw result files of every (rho, n) cell of config["vi"]: results/vi/raw/rho{rho:g}_n{n}.csv."""
    return [f"{VI}/raw/rho{float(rho):g}_n{int(n)}.csv" for rho in config["vi"]["rhos"] for n in config["vi"]["ns"]]


def vi_coverage_paths():
    """Coverage runs, one per rho of config["vi"]: results/vi/coverage/rho{rho:g}.csv."""
    return [f"{VI}/coverage/rho{float(rho):g}.csv" for rho in config["vi"]["rhos"]]


def vi_threads():
    return config["vi"]["threads"]
