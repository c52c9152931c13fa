# Two entry points for a fresh machine with Python 3.11 and pip:
#   make figures   set up .venv and run the default workflow to every figure
#   make test      set up .venv (with the test extra) and run the test suite
# After a run, `make archive-results` packs its outputs into one checkable tarball (see its comment below).
# TORCH picks the torch wheel: the CPU wheel by default; e.g. TORCH="torch==2.13.0" on CUDA hosts
# with a matching index.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: figures test setup report archive archive-results clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,cluster]"
	touch $@

setup: $(VENV)/.installed

figures: setup
	. $(BIN)/activate && snakemake --cores $(CORES)

test: setup
	. $(BIN)/activate && python -m pytest

# After `make figures`: the HTML report (figures, captions, tables) and the workflow archive (git-tracked
# files and external inputs; commit first). README: "Report", "Archiving a run for a paper".
report: setup
	. $(BIN)/activate && snakemake --report report.zip

archive: setup
	. $(BIN)/activate && snakemake --archive kernelft-workflow.tar.gz

# The outputs with what made them, in one command: report.zip, then kernelft-results.tar.gz with results/,
# figures/, report.zip, the effective config, pip freeze, the commit and MANIFEST.sha256 (`kernelft verify`
# checks it). CONFIGFILE: the run's --configfile files, e.g. `make archive-results CONFIGFILE=configs/paper.yaml`.
CONFIGFILE ?=
archive-results: setup
	. $(BIN)/activate && snakemake --report report.zip $(if $(CONFIGFILE),--configfile $(CONFIGFILE)) \
		&& kernelft archive --config config.yaml $(CONFIGFILE) -o kernelft-results.tar.gz

clean-results:
	rm -rf results figures .snakemake
