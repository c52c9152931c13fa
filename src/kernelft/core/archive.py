"""One tarball of a run's outputs and what made them, and its check against a manifest of sha256 sums.

:func:`pack` writes ``<name>.tar.gz`` holding one folder ``<name>/``::

    MANIFEST.sha256         sha256 of every other file, `sha256sum` format: `sha256sum -c MANIFEST.sha256` checks it
    results/                tables, arrays and their .meta.json, results/logs and results/benchmarks included
    figures/                PNG and PDF figures (when the run made any)
    report.zip              the `snakemake --report` (when there is one; `make archive-results` builds it)
    config/effective.yaml   the config the run used: the files merged in order, with the schema's defaults
    config/1-config.yaml    the config files as given, numbered in merge order
    pip-freeze.txt          `python -m pip freeze` of the interpreter packing the archive
    provenance.json         the commit and whether the checkout was dirty, Python and package versions

:func:`verify` checks an unpacked archive against its manifest: missing, changed and extra files. The
workflow's code and inputs go in the other archive, ``snakemake --archive`` (README, "Archiving a run
for a paper").
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from kernelft.core.config import load_config
from kernelft.core.provenance import git_commit, package_versions

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.sha256"
"""The manifest's name at the archive's root: one line ``<sha256>  <relative path>`` per other file."""

SKIPPED = frozenset({".snakemake", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".cache", ".DS_Store"})
"""Folder and file names left out wherever they occur under results/ and figures/: Snakemake's
bookkeeping and caches, not part of the record (``.snakemake_timestamp`` markers too, see :func:`_skipped`)."""

CHUNK = 1 << 20


class ArchiveError(ValueError):
    """A user error: a missing folder or file, a path that is no archive, a manifest that cannot be read."""


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found: paths relative to the archive's root, each list sorted."""

    root: Path
    checked: int
    missing: list[str]
    changed: list[str]
    extra: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.extra)

    def report(self) -> str:
        """One line per problem, then a summary line."""
        lines = [f"{kind}: {path}" for kind, paths in (("missing", self.missing), ("changed", self.changed),
                                                      ("extra", self.extra)) for path in paths]
        if self.ok:
            lines.append(f"{self.root}: OK, {self.checked} files match {MANIFEST}")
        else:
            lines.append(f"{self.root}: FAILED, {len(self.missing)} missing, {len(self.changed)} changed, "
                         f"{len(self.extra)} extra of {self.checked} files in {MANIFEST}")
        return "\n".join(lines)


def _skipped(name: str) -> bool:
    return name in SKIPPED or name.startswith(".snakemake")


def _walk(folder: Path) -> Iterator[tuple[Path, PurePosixPath]]:
    """Every file under ``folder`` (symlinks to files followed, SKIPPED names left out) with its path
    relative to ``folder``."""
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not _skipped(name)]
        for name in dirs:
            if Path(parent, name).is_symlink():
                log.warning("%s: a symlink to a folder, not followed", Path(parent, name))
        for name in files:
            path = Path(parent, name)
            if not _skipped(name) and path.is_file():
                yield path, PurePosixPath(path.relative_to(folder).as_posix())


def _check_name(name: str) -> str:
    if "\n" in name or "\\" in name:
        raise ArchiveError(f"{name!r}: a file name with a newline or backslash cannot go in {MANIFEST}; rename it")
    return name


def pip_freeze() -> str:
    """``sys.executable -m pip freeze``; where pip is missing (e.g. a uv venv), ``name==version`` of every
    installed distribution from importlib.metadata, under a comment saying so."""
    try:
        run = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
        return run.stdout
    except (OSError, subprocess.CalledProcessError) as err:
        log.warning("pip freeze failed (%s); listing installed distributions from importlib.metadata", err)
        names = sorted({f"{dist.metadata['Name']}=={dist.version}" for dist in metadata.distributions()},
                       key=str.lower)
        return "# pip freeze failed; installed distributions from importlib.metadata\n" + "".join(
            f"{name}\n" for name in names)


def _config_text(config_files: Sequence[Path], effective_config: Path | None) -> tuple[str, str]:
    """The effective config's YAML and a line saying where it comes from."""
    if effective_config is not None:
        return effective_config.read_text(), f"the file {effective_config} as given"
    config = load_config(*config_files)
    source = (f"{' + '.join(str(path) for path in config_files)} merged in order with the schema's defaults "
              "(kernelft.core.config.load_config, as `snakemake --configfile` merges them)")
    return f"# effective config: {source}\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), source


def _root_name(output: Path) -> str:
    name = output.name
    for suffix in (".tar.gz", ".tgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or "archive"
    return name


def pack(
    run_dir: str | Path = ".",
    output: str | Path = "kernelft-results.tar.gz",
    config_files: Sequence[str | Path] = ("config.yaml",),
    effective_config: str | Path | None = None,
    results: str | Path = "results",
    figures: str | Path = "figures",
    report: str | Path | None = "report.zip",
) -> Path:
    """Write ``output``, a gzipped tar of one folder named as ``output`` less ``.tar.gz`` (layout in the
    module docstring), and return its path.

    Args:
        run_dir: the checkout the run ran in; relative paths below are relative to it, and its git commit
            (``git rev-parse HEAD``, dirty when tracked files differ from it) goes in provenance.json.
        output: the ``.tar.gz`` to write (relative to the current directory); written beside it first
            and renamed, so a failed pack leaves no partial archive.
        config_files: the config files of the run in merge order (config.yaml first, then each
            ``--configfile``). The workflow writes no effective config of its own, so without
            ``effective_config`` the effective one is these files merged in order with the schema's
            defaults by :func:`kernelft.core.config.load_config`, which also validates them.
        effective_config: a file holding the merged config, packed as it is instead.
        results: the results folder (required), packed as ``results/``, logs and benchmarks included.
        figures: the figures folder, packed as ``figures/``; skipped with a warning when absent.
        report: the ``snakemake --report`` zip, packed as ``report.zip`` when the file exists.

    Members are sorted by path (MANIFEST.sha256 last, hashed as they are written), owners are
    left out and the gzip header carries no time, so two packs of the same files differ only in
    provenance.json's ``created`` and the generated files' modification times. Names in
    :data:`SKIPPED` are left out, and so is ``output`` when it lies under results/ or figures/.

    Raises:
        ArchiveError: results/ or a config file missing.
        kernelft.core.config.ConfigError: the config files do not form a valid config.
    """
    run_dir = Path(run_dir)
    output = Path(output)
    results_dir, figures_dir = run_dir / results, run_dir / figures
    if not results_dir.is_dir():
        raise ArchiveError(f"results folder {results_dir} not found: run the workflow first (`make figures`), "
                           "or name the folder with --results")
    config_paths = [run_dir / path for path in config_files]
    effective_path = None if effective_config is None else run_dir / effective_config
    for path in [*config_paths, *([effective_path] if effective_path else [])]:
        if not path.is_file():
            raise ArchiveError(f"config file {path} not found")
    if effective_path is None and not config_paths:
        raise ArchiveError("no config: give the run's config files (config.yaml first) or an effective config")
    effective_text, effective_source = _config_text(config_paths, effective_path)

    files: dict[str, Path] = {}  # archive path -> file on disk
    for prefix, folder in (("results", results_dir), ("figures", figures_dir)):
        if not folder.is_dir():
            log.warning("%s not found: the archive has no %s/", folder, prefix)
            continue
        for path, relative in _walk(folder):
            if path.resolve() != output.resolve():
                files[_check_name(f"{prefix}/{relative}")] = path
    report_path = None if report is None else run_dir / report
    if report_path is not None and report_path.is_file():
        files["report.zip"] = report_path
    elif report_path is not None:
        log.warning("%s not found: the archive has no report.zip (`make archive-results` builds it)", report_path)
    for number, path in enumerate(config_paths, 1):
        files[_check_name(f"config/{number}-{path.name}")] = path

    commit = git_commit(run_dir)
    provenance: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": None if commit is None else commit.removesuffix("+dirty"),
        "dirty": None if commit is None else commit.endswith("+dirty"),
        "git_commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "effective_config": effective_source,
        "config_files": [str(path) for path in config_paths],
        "results": str(results_dir),
        "figures": str(figures_dir) if figures_dir.is_dir() else None,
        "report": str(report_path) if "report.zip" in files else None,
    }
    generated = {
        "config/effective.yaml": effective_text.encode(),
        "pip-freeze.txt": pip_freeze().encode(),
        "provenance.json": (json.dumps(provenance, indent=2) + "\n").encode(),
    }
    _write(output, _root_name(output), files, generated)
    log.info("wrote %s: %d files and %s", output, len(files) + len(generated), MANIFEST)
    return output


class _Hashing:
    """A file read through, hashing what passes (so each file is read once, and hashed as written)."""

    def __init__(self, handle):
        self.handle, self.sha256 = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha256.update(data)
        return data


def _info(name: str, size: int, mtime: float, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime), mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write(output: Path, root: str, files: dict[str, Path], generated: dict[str, bytes]) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    sums: dict[str, str] = {}
    now = time.time()
    try:
        with open(partial, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted([*files, *generated]):
                if name in generated:
                    data = generated[name]
                    sums[name] = hashlib.sha256(data).hexdigest()
                    tar.addfile(_info(f"{root}/{name}", len(data), now), io.BytesIO(data))
                    continue
                stat = files[name].stat()
                with open(files[name], "rb") as handle:
                    reader = _Hashing(handle)
                    mode = 0o755 if stat.st_mode & 0o100 else 0o644
                    tar.addfile(_info(f"{root}/{name}", stat.st_size, stat.st_mtime, mode), reader)
                sums[name] = reader.sha256.hexdigest()
            manifest = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums)).encode()
            tar.addfile(_info(f"{root}/{MANIFEST}", len(manifest), now), io.BytesIO(manifest))
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of a manifest; :class:`ArchiveError` naming the line if one is malformed."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        parts = PurePosixPath(name).parts
        if (not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not name
                or name.startswith("/") or ".." in parts):
            raise ArchiveError(f"{path}:{number}: expected '<sha256>  <relative path>', found {line!r}")
        sums[name] = digest
    return sums


def _archive_root(folder: Path) -> Path:
    """``folder`` when it holds the manifest, else its only subfolder that does (a tarball unpacked into it)."""
    if (folder / MANIFEST).is_file():
        return folder
    inner = [path for path in folder.iterdir() if (path / MANIFEST).is_file()] if folder.is_dir() else []
    if len(inner) == 1:
        return inner[0]
    raise ArchiveError(f"{folder}: no {MANIFEST} in it or in one folder inside it: not an unpacked kernelft archive")


def verify(unpacked_dir: str | Path) -> Verification:
    """Check an unpacked archive against its MANIFEST.sha256: files listed but absent (missing), listed
    with another sha256 (changed), present but not listed (extra; folders do not count).

    ``unpacked_dir`` is the archive's root (the folder holding MANIFEST.sha256) or the folder it was
    unpacked into. Raises :class:`ArchiveError` when there is no manifest or it cannot be read.
    """
    root = _archive_root(Path(unpacked_dir))
    sums = read_manifest(root / MANIFEST)
    missing, changed = [], []
    for name, digest in sorted(sums.items()):
        path = root / name
        if not path.is_file():
            missing.append(name)
        elif _sha256(path) != digest:
            changed.append(name)
    present = {Path(parent, name).relative_to(root).as_posix() for parent, _, names in os.walk(root) for name in names}
    extra = sorted(present - set(sums) - {MANIFEST})
    return Verification(root, len(sums), missing, changed, extra)


def verify_tarball(tarball: str | Path) -> Verification:
    """:func:`verify` of a ``.tar.gz`` unpacked into a temporary folder (removed after); ``root`` is the tarball."""
    tarball = Path(tarball)
    with tempfile.TemporaryDirectory(prefix="kernelft-verify-") as scratch:
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(scratch, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ArchiveError(f"{tarball}: cannot unpack ({err})") from None
        found = verify(scratch)
        return Verification(tarball, found.checked, found.missing, found.changed, found.extra)
