"""The ``kernelft`` command: what a user may want to run by hand, over the same library calls as the workflow.

    kernelft check config.yaml my.yaml   validate configs as `snakemake --configfile` would merge them
    kernelft defaults [SECTION]          print the schema's defaults (all sections, or one) as YAML
    kernelft schema                      print the path of the packaged JSON schema

The workflow itself runs with ``snakemake`` (README, "Everyday use").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from kernelft import __version__
from kernelft.core.config import SCHEMA_PATH, ConfigError, load_config, section_defaults, with_defaults
from kernelft.text.checkpoints import check_templates


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


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="kernelft",
        description="The kernel (eNTK) view of fine-tuning language models. The workflow runs with "
        "`snakemake`; these commands check and explain its configuration.",
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
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
