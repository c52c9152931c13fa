"""Config validation, the one place for it: the JSON schema (types, ranges, misspelt keys, and every
default) plus the cross-key checks.

Snakemake's ``validate()`` runs the schema when the workflow starts; :func:`check_config` then checks
what a schema cannot express (a stage naming an unknown task, sample sizes that are not a multiple
of the class count, label words missing for the prompt head, ...). Both run before any job, and every
message is a :class:`ConfigError` naming the key as the user wrote it. Defaults live only in the schema:
library code that needs one reads it through :func:`section_defaults`.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kernelft.text.templates import check_template
from kernelft.training import LINEAR_PROBE_METHODS

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")
"""The JSON schema of the config, shipped inside the package (every key with its description and default)."""

STAGES_WITH_TASKS = ("entk", "finetune")
"""Config sections that name tasks in a ``tasks`` list and sample sizes in ``sample_sizes``."""


class ConfigError(ValueError):
    """The config is invalid; the message names the key."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@functools.cache
def _packaged_schema() -> dict[str, Any]:
    return load_schema()


def _defaults(properties: dict[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(spec["default"]) for key, spec in properties.items() if "default" in spec}


def section_defaults(section: str) -> dict[str, Any]:
    """The schema's default of every key of config section ``section`` that has one (a fresh copy)."""
    return _defaults(_packaged_schema()["properties"][section]["properties"])


def task_defaults() -> dict[str, Any]:
    """The schema's default of every key of a task entry ``tasks.<name>`` that has one (template, ...)."""
    return _defaults(_packaged_schema()["properties"]["tasks"]["additionalProperties"]["properties"])


def validate_schema(config: dict[str, Any], schema: dict[str, Any] | None = None) -> None:
    """Check ``config`` against the JSON schema, raising :class:`ConfigError` naming the key."""
    validator = jsonschema.Draft202012Validator(schema or _packaged_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("; ".join(_describe(error) for error in errors))


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
    return f"config key {key}: {error.message}"


def check_method_head(method: str, head: str, key: str = "finetune.method") -> None:
    """Raise :class:`ConfigError` when the method at config key ``key`` cannot run with ``model.head``."""
    if method in LINEAR_PROBE_METHODS and head != "linear":
        raise ConfigError(
            f"{key}={method!r} starts from a linear probe, which needs model.head: linear; "
            f"model.head is {head!r} (a prompt head has no linear layer to probe). Use method ft, lora or "
            "linearized with the prompt head, or model.head: linear."
        )


def _require_task(key: str, name: str, tasks: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` when config key ``key`` names a task that ``tasks`` does not define."""
    if name not in tasks:
        raise ConfigError(f"config key {key} names unknown task {name!r}; defined tasks: {sorted(tasks)}")


def check_config(config: dict[str, Any]) -> None:
    """Cross-key checks that the schema cannot express; raise :class:`ConfigError` on the first."""
    tasks = config.get("tasks", {})
    head = {**section_defaults("model"), **config.get("model", {})}["head"]
    finetune = {**section_defaults("finetune"), **config.get("finetune", {})}
    check_method_head(finetune["method"], head)
    if finetune["select"] == "best_dev":
        raise ConfigError("config key finetune.select='best_dev': the finetune sweep reads no dev set; best-dev "
                          "selection runs in the Malladi stage (malladi.finetune.select) and the LP-FT stage")
    for name, task in tasks.items():
        task = {**task_defaults(), **task}
        if task["source"] in ("hub", "csv") and not task.get("path"):
            raise ConfigError(f"config key tasks.{name}.path is required for source {task['source']!r}")
        if head == "prompt" and len(task["label_words"]) != len(task["labels"]):
            raise ConfigError(
                f"config key tasks.{name}.label_words: model.head is 'prompt', so it needs one word per label "
                f"{task['labels']}, found {task.get('label_words', [])}"
            )
        try:  # what every family needs; check_templates adds the family's own rule where it is known
            check_template(task["template"], causal=None, pair=bool(task["text_column2"]))
        except ValueError as err:
            raise ConfigError(f"config key tasks.{name}.template: {err}") from None
    for stage in STAGES_WITH_TASKS:
        section = config.get(stage, {})
        for name in section.get("tasks", []):
            _require_task(f"{stage}.tasks", name, tasks)
            classes = len(tasks[name]["labels"])
            for n in section.get("sample_sizes", []):
                if n % classes:
                    raise ConfigError(
                        f"config key {stage}.sample_sizes: n={n} is not a multiple of "
                        f"the {classes} classes of task {name!r}"
                    )
    _check_earlystop(config.get("earlystop", {}), tasks)
    _check_malladi(config.get("malladi", {}), tasks)
    _check_lpft(config.get("lpft", {}), tasks, config.get("data", {}).get("test_size"))
    _check_taskvec(config.get("taskvec", {}), tasks, config.get("data", {}).get("test_size"))


def _check_earlystop(section: dict[str, Any], tasks: dict[str, Any]) -> None:
    """The `earlystop` stage: known binary tasks, a pool that holds the largest size plus the test set."""
    for name in section.get("tasks", []):
        _require_task("earlystop.tasks", name, tasks)
        if len(tasks[name]["labels"]) != 2:
            raise ConfigError(
                f"config key earlystop.tasks: task {name!r} has {len(tasks[name]['labels'])} classes; the "
                "early-stopping stage needs binary tasks (its eNTK output is logit_1 - logit_0)"
            )
    pool, sizes, n_test = section.get("pool_size"), section.get("sizes"), section.get("n_test")
    if pool is not None and sizes and n_test is not None:
        if max(sizes) + n_test > pool:
            raise ConfigError(
                f"config key earlystop.pool_size={pool} is smaller than max(earlystop.sizes)={max(sizes)} + "
                f"earlystop.n_test={n_test}; raise pool_size or lower the sizes"
            )
        if pool % 2:
            raise ConfigError(f"config key earlystop.pool_size={pool} is not a multiple of the 2 classes")
    if sizes and section.get("n_rep") is not None and len(sizes) * section["n_rep"] < 3:
        raise ConfigError("config keys earlystop.sizes and earlystop.n_rep give fewer than 3 runs; a slope needs 3")
    extra = sorted(set(section.get("finetune_sizes", [])) - set(sizes or []))
    if sizes and extra:
        raise ConfigError(f"config key earlystop.finetune_sizes: {extra} not in earlystop.sizes={sizes}; real "
                          "fine-tuning reuses the kernel sweep's draws and stopping times")
    if "n_rep" in section and section.get("finetune_reps", 0) > section["n_rep"]:
        raise ConfigError(f"config key earlystop.finetune_reps={section['finetune_reps']} exceeds "
                          f"earlystop.n_rep={section.get('n_rep')}: only the sweep's draws have a T-hat")


def seeds_for(section: dict[str, Any], k: int) -> list[int]:
    """The data seeds of the `malladi` runs with k shots: ``seeds_by_k``'s entry for k, else ``seeds``."""
    for entry in section.get("seeds_by_k") or []:
        if entry["k"] == k:
            return list(entry["seeds"])
    return list(section["seeds"])


def _check_malladi(section: dict[str, Any], tasks: dict[str, Any]) -> None:
    """The `malladi` stage: known tasks, and the linearized seeds and shots among its seeds and shots."""
    named = [("malladi.tasks", name) for name in section.get("tasks", [])]
    if "task" in section.get("projection", {}):
        named.append(("malladi.projection.task", section["projection"]["task"]))
    for key, name in named:
        _require_task(key, name, tasks)
    shots = section.get("shots") or []
    for index, entry in enumerate(section.get("seeds_by_k") or []):
        if shots and entry["k"] not in shots:
            raise ConfigError(f"config key malladi.seeds_by_k.{index}.k={entry['k']} is not in malladi.shots={shots}")
    heads = section.get("heads") or []
    extra = sorted(set(section.get("linearized_heads") or []) - set(heads))
    if heads and extra:
        raise ConfigError(f"config key malladi.linearized_heads: {extra} not in malladi.heads={heads}")
    extra = sorted(set(section.get("linearized_shots") or []) - set(shots))
    if shots and extra:
        raise ConfigError(f"config key malladi.linearized_shots: {extra} not in malladi.shots={sorted(shots)}")
    if "seeds" in section:
        for k in section.get("linearized_shots") or shots:
            seeds = seeds_for(section, k)
            extra = sorted(set(section.get("linearized_seeds") or []) - set(seeds))
            if extra:
                raise ConfigError(f"config key malladi.linearized_seeds: {extra} not among the seeds {seeds} of the "
                                  f"runs with k = {k} (malladi.seeds, malladi.seeds_by_k)")


def _check_lpft(section: dict[str, Any], tasks: dict[str, Any], data_test_size: int | None) -> None:
    """The `lpft` stage: known ID / OOD tasks with the same labels, sizes that fit the classes and sets."""
    if not section:
        return
    if "id_task" in section:
        _require_task("lpft.id_task", section["id_task"], tasks)
    for name in section.get("ood_tasks", []):
        _require_task("lpft.ood_tasks", name, tasks)
    if "id_task" not in section:
        return
    id_task, labels = section["id_task"], tasks[section["id_task"]]["labels"]
    for name in section.get("ood_tasks", []):
        if name == id_task:
            raise ConfigError(f"config key lpft.ood_tasks: {name!r} is lpft.id_task; an OOD set must be another task")
        if tasks[name]["labels"] != labels:
            raise ConfigError(f"config key lpft.ood_tasks: task {name!r} has the labels {tasks[name]['labels']}; "
                              f"it needs those of lpft.id_task {id_task!r}, {labels} (one head serves them all)")
    for key in ("n", "test_size", "val_size"):
        if key in section and section[key] % len(labels):
            raise ConfigError(f"config key lpft.{key}={section[key]} is not a multiple of the {len(labels)} classes")
    if data_test_size is not None and section.get("test_size", 0) > data_test_size:
        raise ConfigError(f"config key lpft.test_size={section['test_size']} exceeds data.test_size={data_test_size}, "
                          "the size of each task's fixed test set it is drawn from")


def validate(config: dict[str, Any]) -> None:
    """Schema validation then cross-key checks (for use outside Snakemake, e.g. in tests)."""
    validate_schema(config)
    check_config(config)


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` itself, with every key the schema gives a default filled in at every depth, by Snakemake's
    own ``validate(..., set_default=True)`` (as the workflow fills them)."""
    from snakemake.utils import validate as snakemake_validate

    snakemake_validate(config, str(SCHEMA_PATH), set_default=True)
    return config


def load_config(*paths: str | Path) -> dict[str, Any]:
    """The config of ``snakemake --configfile PATHS...``: the files merged in order by Snakemake's own
    ``update_config``, validated against the schema, with its defaults (:func:`with_defaults`), and
    cross-checked; a :class:`ConfigError` names the key or the file."""
    from snakemake.utils import update_config

    config: dict[str, Any] = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"config file {path}: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of config sections, "
                              f"found {type(loaded).__name__}")
        update_config(config, loaded)
    validate_schema(config)
    check_config(with_defaults(config))
    return config


def _check_taskvec(section: dict[str, Any], tasks: dict[str, Any], data_test_size: int | None) -> None:
    """The `taskvec` stage: pairs of two different binary prompt tasks, λ grids that hold 1, sizes that fit."""
    for i, pair in enumerate(section.get("pairs", [])):
        for name in pair["tasks"]:
            _require_task(f"taskvec.pairs.{i}.tasks", name, tasks)
            if len(tasks[name]["labels"]) != 2 or len(tasks[name].get("label_words", [])) != 2:
                raise ConfigError(f"config key taskvec.pairs.{i}.tasks: task {name!r} needs two labels and two "
                                  "label words (the stage's kernel output is logit_w1 - logit_w0)")
        if pair["tasks"][0] == pair["tasks"][1]:
            raise ConfigError(f"config key taskvec.pairs.{i}.tasks: a pair needs two different tasks")
    for key in ("lambdas", "negation_lambdas"):
        if key in section and not any(math.isclose(lam, 1.0, rel_tol=1e-5, abs_tol=1e-8) for lam in section[key]):
            raise ConfigError(f"config key taskvec.{key}={section[key]} must hold 1.0 (the table's λ = 1 columns)")
    n_train, size, top_k = section.get("n_train"), section.get("kernel_size"), section.get("top_k")
    if n_train is not None and n_train % 2:
        raise ConfigError(f"config key taskvec.n_train={n_train} is not a multiple of the 2 classes")
    if n_train is not None and size is not None and size > n_train:
        raise ConfigError(f"config key taskvec.kernel_size={size} exceeds taskvec.n_train={n_train}")
    if size is not None and top_k is not None and top_k >= size:
        raise ConfigError(f"config key taskvec.top_k={top_k} must be below taskvec.kernel_size={size}")
    if data_test_size is not None and section.get("n_test", 0) > data_test_size:
        raise ConfigError(f"config key taskvec.n_test={section['n_test']} exceeds data.test_size={data_test_size}")
