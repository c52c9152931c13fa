"""`kernelft archive` and `kernelft verify`: a fake run packed, unpacked and checked; a changed byte, a deleted
file and an added file each named; `sha256sum -c` agrees; exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from kernelft.cli import main
from kernelft.core.archive import MANIFEST, ArchiveError, pack, read_manifest, verify, verify_tarball
from kernelft.core.config import ConfigError
from kernelft.core.provenance import git_commit

ROOT = Path(__file__).resolve().parents[2]

RUN = {
    "results/entk/tweets-sentiment2/k16/kernel.npz": b"\x00\x01kernel",
    "results/entk/tweets-sentiment2/k16/kernel.npz.meta.json": b'{"seed": 0}\n',
    "results/logs/entk/tweets-sentiment2-k16.log": b"INFO done\n",
    "results/benchmarks/entk/tweets-sentiment2-k16.tsv": b"s\th:m:s\n1.0\t0:00:01\n",
    "results/.snakemake_timestamp": b"",
    "results/.snakemake/locks/0.lock": b"lock",
    "results/__pycache__/x.pyc": b"cache",
    "figures/F1.png": b"\x89PNG",
    "figures/F1.pdf": b"%PDF",
    "report.zip": b"PK\x05\x06",
}


def make_run(folder: Path) -> Path:
    for name, data in RUN.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    shutil.copy(ROOT / "config.yaml", folder / "config.yaml")
    (folder / "configs").mkdir()
    (folder / "configs" / "mine.yaml").write_text("seed: 7\n")
    return folder


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    """A fake run in a git repository and its archive; tests copy, never change, these."""
    run = make_run(tmp_path_factory.mktemp("run"))
    subprocess.run(["git", "init", "-q"], cwd=run, check=True)
    subprocess.run(["git", "add", "config.yaml"], cwd=run, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"], cwd=run, check=True)
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "\n")  # a tracked file modified: dirty
    tarball = pack(run, run / "out" / "kernelft-results.tar.gz", ["config.yaml", "configs/mine.yaml"])
    return run, tarball


@pytest.fixture
def unpacked(packed, tmp_path) -> Path:
    with tarfile.open(packed[1]) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "kernelft-results"


def test_the_archive_holds_the_run_and_what_made_it(packed, unpacked):
    run, tarball = packed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert names == sorted(names[:-1]) + ["kernelft-results/MANIFEST.sha256"]  # sorted members, manifest last
    expected = {name for name in RUN if ".snakemake" not in name and "__pycache__" not in name}
    expected |= {"config/1-config.yaml", "config/2-mine.yaml", "config/effective.yaml", "pip-freeze.txt",
                 "provenance.json"}
    assert set(read_manifest(unpacked / MANIFEST)) == expected
    for name in expected & set(RUN):
        assert (unpacked / name).read_bytes() == RUN[name]

    effective = yaml.safe_load((unpacked / "config/effective.yaml").read_text())
    assert effective["seed"] == 7 and "entk" in effective and effective["spectrum"]  # mine.yaml over defaults
    assert "pytest==" in (unpacked / "pip-freeze.txt").read_text()
    provenance = json.loads((unpacked / "provenance.json").read_text())
    assert provenance["git_commit"] == git_commit(run) and provenance["dirty"] is True
    assert len(provenance["commit"]) == 40 and "+" not in provenance["commit"]
    assert provenance["config_files"][-1].endswith("configs/mine.yaml")


def test_an_unpacked_archive_verifies(unpacked, packed):
    found = verify(unpacked)
    assert found.ok and found.checked == len(read_manifest(unpacked / MANIFEST))
    assert verify(unpacked.parent).ok  # the folder it was unpacked into
    assert verify_tarball(packed[1]).ok


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum")
def test_sha256sum_checks_the_manifest(unpacked):
    run = subprocess.run(["sha256sum", "--check", "--strict", MANIFEST], cwd=unpacked, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_verify_names_changed_missing_and_extra_files(unpacked):
    kernel = unpacked / "results/entk/tweets-sentiment2/k16/kernel.npz"
    data = bytearray(kernel.read_bytes())
    data[0] ^= 1
    kernel.write_bytes(bytes(data))
    (unpacked / "figures/F1.pdf").unlink()
    (unpacked / "results/notes.txt").write_text("added by hand\n")
    found = verify(unpacked)
    assert not found.ok
    assert found.changed == ["results/entk/tweets-sentiment2/k16/kernel.npz"]
    assert found.missing == ["figures/F1.pdf"]
    assert found.extra == ["results/notes.txt"]
    assert "changed: results/entk/tweets-sentiment2/k16/kernel.npz" in found.report()


def test_a_malformed_manifest_names_its_line(unpacked):
    with open(unpacked / MANIFEST, "a") as handle:
        handle.write("not a sum  ../escape\n")
    with pytest.raises(ArchiveError, match=rf"{MANIFEST}:\d+"):
        verify(unpacked)


def test_pack_stops_on_a_missing_results_folder_or_a_bad_config(tmp_path):
    with pytest.raises(ArchiveError, match="results"):
        pack(tmp_path, tmp_path / "a.tar.gz", [])
    (tmp_path / "results").mkdir()
    (tmp_path / "bad.yaml").write_text("entk:\n  sample_sizes: [15]\n")
    with pytest.raises(ConfigError, match="entk.sample_sizes"):
        pack(tmp_path, tmp_path / "a.tar.gz", [ROOT / "config.yaml", "bad.yaml"])
    assert not list(tmp_path.glob("a.tar.gz*"))  # nothing half-written


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run")
    monkeypatch.chdir(run)
    assert main(["archive", "--config", "config.yaml", "configs/mine.yaml", "-o", "k.tar.gz"]) == 0
    assert "wrote k.tar.gz" in capsys.readouterr().out
    assert main(["verify", "k.tar.gz"]) == 0
    assert "OK" in capsys.readouterr().out

    with tarfile.open("k.tar.gz") as tar:
        tar.extractall("unpacked", filter="data")
    (run / "unpacked/k/results/logs/entk/tweets-sentiment2-k16.log").write_text("edited\n")
    assert main(["verify", "unpacked"]) == 1
    assert "changed: results/logs/entk/tweets-sentiment2-k16.log" in capsys.readouterr().out

    assert main(["verify", "no-such-archive"]) == 2
    assert main(["verify", "results"]) == 2  # a folder without a manifest
    assert main(["archive", "--results", "no-results", "-o", "x.tar.gz"]) == 2
    assert main(["archive", "--report", "no-report.zip", "-o", "x.tar.gz"]) == 2
    assert "no-report.zip" in capsys.readouterr().err
    assert not Path("x.tar.gz").exists()


def test_an_effective_config_file_is_packed_as_it_is_and_the_output_not_at_all(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "results/config.yaml").write_text("seed: 11  # as the run wrote it\n")
    for _ in range(2):  # the second pack finds the first one's tarball under results/
        tarball = pack(run, run / "results/e.tar.gz", [], effective_config="results/config.yaml")
    with tarfile.open(tarball) as tar:
        assert "e/results/e.tar.gz" not in tar.getnames()
        assert tar.extractfile("e/config/effective.yaml").read() == b"seed: 11  # as the run wrote it\n"
        assert not [name for name in tar.getnames() if name.startswith("e/config/1-")]
