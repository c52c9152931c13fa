"""Logging for workflow scripts: everything, crashes included, lands in the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to ``log_file`` (the rule's ``log[0]``) and stderr; uncaught exceptions are logged too.

    tqdm bars write to stderr, which Snakemake does not capture, so they show in the terminal
    while the log file keeps the record.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    for noisy in ("transformers", "datasets", "matplotlib", "PIL", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def excepthook(kind, value, traceback):
        logging.getLogger("kernelft").error("uncaught exception", exc_info=(kind, value, traceback))

    sys.excepthook = excepthook
