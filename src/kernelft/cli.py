"""The ``kernelft`` command: what a user may want to run by hand, over the same library calls as the workflow.

    kernelft check config.yaml my.yaml   validate configs as `snakemake --configfile` would merge them
    kernelft defaults [SECTION]          print the schema's defaults (all sections, or one) as YAML
    kernelft schema                      print the path of the packaged JSON schema
    kernelft entk texts.csv -o K.npz     the eNTK of a model on a file of texts (:mod:`kernelft.entk.texts`)
    kernelft archive -o out.tar.gz       results, figures, report, config, pip freeze, commit and sha256 manifest
    kernelft verify out.tar.gz           check an archive (or the folder it was unpacked into) against its manifest

The workflow itself runs with ``snakemake`` (README, "Everyday use").
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kernelft import __version__
from kernelft.core.archive import ArchiveError, pack, verify, verify_tarball
from kernelft.core.config import (
    SCHEMA_PATH,
    ConfigError,
    load_config,
    load_schema,
    section_defaults,
    task_defaults,
    with_defaults,
)
from kernelft.text.checkpoints import check_templates

KINDS = ("sgd", "signgd", "signgd_symmetric", "asymmetric_signgd")
"""The values of :class:`kernelft.entk.KernelKind` (spelt out so that the parser does not import torch)."""


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(*args.configs)
        check_templates(config)
    except ConfigError as err:
        print(f"kernelft check: {err}", file=sys.stderr)
        return 2
    stages = [name for name in ("entk", "earlystop", "malladi", "lpft", "taskvec", "vi") if name in config]
    print(f"config OK ({', '.join(args.configs)}): {len(config['tasks'])} tasks; stages {', '.join(stages)}")
    return 0


def _defaults(args: argparse.Namespace) -> int:
    if args.section is None:
        values = with_defaults({})
    else:
        try:
            values = {args.section: section_defaults(args.section)}
        except KeyError:
            print(f"kernelft defaults: no config section {args.section!r}", file=sys.stderr)
            return 2
    print(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), end="")
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(SCHEMA_PATH)
    return 0


def _words(values: list[str] | None) -> list[str]:
    """Values of a flag given comma-separated, repeated, or both."""
    return [word.strip() for value in values or [] for word in value.split(",") if word.strip()]


def _default_task() -> dict[str, Any]:
    """The schema's default task (tweets-sentiment2): its labels and label words are the classes of a
    file without labels when neither --labels nor --label-words is given."""
    return next(iter(load_schema()["properties"]["tasks"]["default"].values()))


def _task_config(args: argparse.Namespace, frame) -> dict[str, Any]:
    """``tasks.<task>``-like slice (labels, label_words, template) from the flags and the label column."""
    names, words = _words(args.labels), _words(args.label_words)
    if args.label_column is not None:
        values = frame["label"].unique()
        try:
            found = [str(value) for value in sorted(values)]
        except TypeError:
            found = sorted(str(value) for value in values)
        unknown = sorted(set(found) - set(names)) if names else []
        if unknown:
            raise ConfigError(f"{args.input}: labels {unknown} of column {args.label_column!r} are not in "
                              f"--labels {','.join(names)}")
        names = names or found
    elif not names and not words:
        names, words = _default_task()["labels"], _default_task()["label_words"]
    names = names or words
    if len(names) < 2:
        raise ConfigError(f"{args.input}: {len(names)} class ({', '.join(names)}); an eNTK needs at least 2 "
                          "(name them with --labels, or give --label-words)")
    if args.head == "prompt" and len(words) != len(names):
        raise ConfigError(f"--head prompt needs one --label-words word per class: {len(names)} classes "
                          f"({', '.join(names)}), {len(words)} label words ({', '.join(words) or 'none'})")
    return {"labels": names, "label_words": words, "template": args.template}


def _entk(args: argparse.Namespace) -> int:
    from kernelft.core.provenance import write_metadata
    from kernelft.entk import check_finite
    from kernelft.entk.texts import TextFileError, file_sha256, read_texts, text_kernel_fn
    from kernelft.text.experiment import resolve_device
    from kernelft.text.models import ModelNotFoundError

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:  # also transformers' weight-loading bar and load report
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    model_config = {"name": args.model, "head": args.head, "max_length": args.max_length, "dtype": args.dtype,
                    "device": args.device}
    entk_config = {"kind": args.kind, "params": args.params, "projection_dim": args.projection_dim,
                   "projection": args.projection, "max_memory_gb": args.max_memory_gb}
    try:  # user errors: the file, a flag, the model or its label words and template, a missing GPU
        frame = read_texts(args.input, args.text_column, args.label_column, args.limit)
        task_config = _task_config(args, frame)
        try:
            resolve_device(args.device)
        except RuntimeError as err:
            raise ConfigError(f"--device {args.device}: {err}") from None
        kernel_fn = text_kernel_fn(model_config, task_config, entk_config, seed=args.seed,
                                   show_progress=not args.quiet)
        batch = kernel_fn.encode(frame)
    except (TextFileError, ConfigError, ModelNotFoundError, ValueError) as err:
        print(f"kernelft entk: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    kernel = check_finite(kernel_fn.kernel(batch), f"eNTK of {args.input}")
    seconds = time.perf_counter() - start
    arrays = {"kernel": kernel}
    if args.label_column is not None:
        labels = frame["label"].to_numpy()
        arrays["labels"] = labels.astype(str) if labels.dtype == object else labels
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as handle:  # exactly this path: np.savez would append .npz to a name without it
        np.savez(handle, **arrays)
    meta = write_metadata(
        output,
        {"model": model_config, "task": task_config, "entk": entk_config},
        seed=args.seed,
        model=args.model,
        head=args.head,
        kind=args.kind,
        params=args.params,
        projection_dim=args.projection_dim,
        projection=args.projection if args.projection_dim else None,
        n=len(frame),
        classes=task_config["labels"],
        kernel_shape=list(kernel.shape),
        seconds=round(seconds, 3),
        device=str(next(kernel_fn.model.parameters()).device),
        kernelft_version=__version__,
        input=str(args.input),
        input_sha256=file_sha256(args.input),
        input_columns={"text": args.text_column, "label": args.label_column},
        limit=args.limit,
    )
    print(f"wrote {output}: kernel {kernel.shape} ({args.kind}, params {args.params}) of {len(frame)} texts "
          f"in {seconds:.1f} s; metadata {meta}")
    return 0


def _archive(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="kernelft archive: %(message)s")
    configs = args.config if args.config is not None else ([] if args.effective_config else ["config.yaml"])
    if configs and Path(configs[0]).name != "config.yaml" and Path("config.yaml").is_file():
        print(f"kernelft archive: note: --config starts with {configs[0]}, not config.yaml, which snakemake "
              "always loads first (the Snakefile's configfile:); if the run used it, give --config config.yaml "
              f"{' '.join(configs)}", file=sys.stderr)
    try:
        if args.report is not None and not Path(args.report).is_file():
            raise ArchiveError(f"report {args.report} not found: build it with `snakemake --report {args.report}` "
                               "(`make archive-results` does both)")
        output = pack(".", args.output, configs, args.effective_config, args.results, args.figures,
                      args.report or "report.zip")
    except (ArchiveError, ConfigError) as err:
        print(f"kernelft archive: {err}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB); check it with `kernelft verify {output}`")
    return 0


def _verify(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        if path.is_file():
            found = verify_tarball(path)
        elif path.is_dir():
            found = verify(path)
        else:
            raise ArchiveError(f"{path} not found")
    except ArchiveError as err:
        print(f"kernelft verify: {err}", file=sys.stderr)
        return 2
    print(found.report())
    return 0 if found.ok else 1


def _add_archive(commands) -> None:
    command = commands.add_parser(
        "archive",
        help="pack a run's outputs and what made them into one .tar.gz with a sha256 manifest",
        description="Write one .tar.gz of results/ (logs and benchmarks included), figures/, report.zip, the "
        "effective config (the config files merged in order with the schema's defaults), `pip freeze`, the git "
        "commit with a dirty flag, and MANIFEST.sha256 over every other file (`sha256sum -c` checks it too). "
        "Paths are relative to the current directory, the checkout the run ran in. `make archive-results` "
        "builds report.zip first. Exit status 2 on a missing folder or file or an invalid config.",
    )
    command.add_argument("-o", "--output", default="kernelft-results.tar.gz",
                         help="the .tar.gz to write; it holds one folder of the same name less .tar.gz "
                         "(default: kernelft-results.tar.gz)")
    command.add_argument("--results", default="results", help="the results folder, required (default: results)")
    command.add_argument("--figures", default="figures", help="the figures folder, skipped if absent "
                         "(default: figures)")
    command.add_argument("--report", default=None, help="the `snakemake --report` zip, required when given "
                         "(default: report.zip if present)")
    command.add_argument("--config", nargs="+", default=None, metavar="CONFIG",
                         help="the run's config files in merge order, as for `kernelft check`, e.g. config.yaml "
                         "configs/paper.yaml (default: config.yaml)")
    command.add_argument("--effective-config", default=None, metavar="FILE",
                         help="a file holding the merged config, packed as it is instead of merging --config "
                         "(default: none)")
    command.set_defaults(run=_archive)
    check = commands.add_parser(
        "verify",
        help="check an archive against its MANIFEST.sha256",
        description="Check a `kernelft archive` tarball (unpacked to a temporary folder), its unpacked folder, or "
        "the folder it was unpacked into against its MANIFEST.sha256, and list missing, changed and extra "
        "files. Exit status 1 when any file differs, 2 when PATH is no archive.",
    )
    check.add_argument("path", metavar="PATH", help="a .tar.gz, or a folder holding MANIFEST.sha256 or one "
                       "folder that does")
    check.set_defaults(run=_verify)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected an integer ≥ 1")
    return value


def _add_entk(commands) -> None:
    model, entk, task = section_defaults("model"), section_defaults("entk"), task_defaults()
    schema = load_schema()["properties"]
    seed = schema["seed"]["default"]
    example = _default_task()
    dtypes = schema["model"]["properties"]["dtype"]["enum"]
    devices = schema["model"]["properties"]["device"]["enum"]
    heads = ("prompt", "linear")
    command = commands.add_parser(
        "entk",
        help="the eNTK of a model on a CSV/JSONL/Parquet file of texts",
        description="Compute the empirical NTK K[i, j] = <grad f(x_i), grad f(x_j)> of a model on the texts of a "
        "file (Malladi et al. 2023), as the workflow's eNTK stage does, and write it to OUTPUT (.npz: `kernel`, "
        "and `labels` with --label-column) with its metadata in OUTPUT.meta.json (model, head, kind, params, "
        "projection, n, seconds, kernelft version, the input's sha256). Defaults come from the packaged config "
        "schema (`kernelft defaults model`). Exit status 2 on a bad file, column, flag or model.",
    )
    command.add_argument("input", help="texts: .csv, .jsonl or .json (JSON lines or an array of records), .parquet")
    command.add_argument("-o", "--output", required=True, help="the .npz to write (required)")
    command.add_argument("--text-column", default=task["text_column"],
                         help=f"column holding the texts (default: {task['text_column']})")
    command.add_argument("--label-column", default=None,
                         help="column of labels (default: none): they pass through to the output and their distinct "
                         "values (sorted, or in --labels order) are the classes")
    command.add_argument("--labels", action="append", metavar="NAMES",
                         help="class names, comma-separated or repeated; without --label-column they (or "
                         "--label-words) set the classes (default: none; with neither, the default task's "
                         f"{','.join(example['labels'])} with label words {','.join(example['label_words'])})")
    command.add_argument("--label-words", action="append", metavar="WORDS",
                         help="one single-token word per class for the prompt head, comma-separated or repeated "
                         f"(default: none, or {','.join(example['label_words'])} as for --labels)")
    command.add_argument("--model", default=model["name"],
                         help=f"hub id, local folder or {model['name']} (default: {model['name']})")
    command.add_argument("--head", choices=heads, default=model["head"],
                         help=f"prompt: label-word logits at the mask; linear: a fresh linear head seeded by --seed "
                         f"(default: {model['head']})")
    command.add_argument("--template", default=task["template"],
                         help=f"prompt template with {{sentence}} and {{mask}} (default: {task['template']!r})")
    command.add_argument("--kind", choices=KINDS, default=entk["kind"],
                         help=f"kernel kind, see kernelft.entk.KernelKind (default: {entk['kind']})")
    command.add_argument("--params", default="all",
                         help="parameters differentiated: all, no_embeddings, last_layers:<L>, or lora (adapters "
                         "with B = 0, rank 8, alpha 16 on peft's default targets of the architecture: query and "
                         "value projections) (default: all)")
    command.add_argument("--max-memory-gb", type=float, default=entk["max_memory_gb"],
                         help=f"memory budget of the gradients and kernel blocks (default: {entk['max_memory_gb']})")
    command.add_argument("--projection-dim", type=_positive_int, default=None,
                         help="kernel of randomly projected gradients of this dimension, seeded by --seed "
                         "(default: none, the exact kernel)")
    command.add_argument("--projection", choices=("countsketch", "factored"), default="countsketch",
                         help="with --projection-dim: countsketch (all parameters into d numbers, any kind) or "
                         "factored (LoGra: each Linear weight's gradient as P_out g P_in^T, k = sqrt(d) per side, "
                         "never formed; other parameters exact; kind sgd) (default: countsketch)")
    command.add_argument("--max-length", type=_positive_int, default=model["max_length"],
                         help=f"maximum tokens per text (default: {model['max_length']})")
    command.add_argument("--dtype", choices=dtypes, default=model["dtype"],
                         help=f"parameter dtype; products accumulate in float64 (default: {model['dtype']})")
    command.add_argument("--device", choices=devices, default=model["device"],
                         help=f"auto = CUDA when torch finds a GPU, else CPU (default: {model['device']})")
    command.add_argument("--seed", type=int, default=seed,
                         help=f"seed of a linear head, LoRA adapters and the projection (default: {seed})")
    command.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                         help="use the first N rows only (default: all)")
    command.add_argument("--quiet", action="store_true", help="no progress bar or log lines (default: shown)")
    command.set_defaults(run=_entk)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="kernelft",
        description="The kernel (eNTK) view of fine-tuning language models. The workflow runs with "
        "`snakemake`; these commands check and explain its configuration, and compute an eNTK by hand.",
    )
    main.add_argument("--version", action="version", version=f"kernelft {__version__}")
    commands = main.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help="validate config files as `snakemake --configfile` merges them",
                                description="Merge the YAML files in order (later ones override earlier ones key "
                                "by key), check them against the schema and the cross-key checks, and report the "
                                "first problem naming its key. Exit status 2 on an invalid config.")
    check.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML files, e.g. config.yaml configs/smoke.yaml")
    check.set_defaults(run=_check)
    defaults = commands.add_parser("defaults", help="print the schema's defaults as YAML",
                                   description="Print every config key's default from the packaged schema.")
    defaults.add_argument("section", nargs="?", help="one config section, e.g. entk or malladi (default: all)")
    defaults.set_defaults(run=_defaults)
    schema = commands.add_parser("schema", help="print the path of the packaged JSON schema")
    schema.set_defaults(run=_schema)
    _add_entk(commands)
    _add_archive(commands)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
