"""empirical_kernels: several kernels from one gradient collection equal the per-kind calls."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import tiny_batch, tiny_classifier

import kernelft.entk.hooks_engine as hooks_engine
from kernelft.entk import KernelKind, add_lora, empirical_kernels, empirical_ntk_fn

MALLADI = [
    ("sgd", "train", "train"),
    ("sgd", "test", "train"),
    ("signgd", "train", "train"),
    ("signgd", "train", "test"),
    ("signgd", "test", "train"),
]
OTHERS = [("asymmetric_signgd", "train", "train"), ("asymmetric_signgd", "train", "test"),
          ("signgd_symmetric", "train", "train"), ("sgd", "test", "test")]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("implementation", ["hooks", "jacobian"])
@pytest.mark.parametrize("head,classes", [("prompt", 2), ("linear", 3)])
def test_every_request_equals_its_own_call(head, classes, implementation):
    model = tiny_classifier("bert", head, classes)
    batches = {"train": tiny_batch(6, seed=0), "test": tiny_batch(3, length=6, seed=1)}
    logits = {}
    got = empirical_kernels(model, batches, MALLADI + OTHERS, implementation=implementation, show_progress=False,
                            logits=logits)
    assert len(got) == len(MALLADI + OTHERS)
    assert sorted(logits) == ["test", "train"]
    for name, batch in batches.items():  # the collection's own forward gives the model's logits
        expected = model(batch["input_ids"], batch["attention_mask"]).detach().double().numpy()
        assert logits[name].shape == (batch["input_ids"].shape[0], classes)
        np.testing.assert_allclose(logits[name], expected, rtol=1e-12, atol=1e-12)
    for kind, rows, cols in MALLADI + OTHERS:
        ntk = empirical_ntk_fn(model, kind=kind, implementation=implementation, show_progress=False)
        expected = ntk(batches[rows], None if rows == cols else batches[cols])
        kernel = got[kind, rows, cols]
        assert kernel.shape == expected.shape
        assert rel_err(kernel, expected) <= 1e-12, (kind, rows, cols)
    n, m = 6, 3
    assert got["sgd", "test", "train"].shape == ((m, n) if classes == 2 else (m, n, classes, classes))
    assert got[KernelKind.ASYMMETRIC_SIGNGD, "train", "test"].shape[:3] == (2, n, m)


def test_gradients_are_collected_once(monkeypatch):
    calls = []
    collect = hooks_engine._collect
    monkeypatch.setattr(hooks_engine, "_collect", lambda *a: calls.append(a[2]) or collect(*a))
    model = tiny_classifier("bert", "prompt", 2)
    batches = {"train": tiny_batch(5), "test": tiny_batch(2, seed=2)}
    empirical_kernels(model, batches, MALLADI, implementation="hooks", show_progress=False)
    assert len(calls) == 2  # one collection per batch (one parameter group)


def test_missing_batch_is_named():
    model = tiny_classifier("bert", "prompt", 2)
    with pytest.raises(ValueError, match="dev"):
        empirical_kernels(model, {"train": tiny_batch(2)}, [("sgd", "train", "dev")])


@pytest.mark.parametrize("implementation", ["hooks", "jacobian"])
def test_requests_with_their_own_parameter_sets(implementation):
    """The full model's and the LoRA adapters' kernels from one collection equal their own calls, and the
    full kernel of the model with adapters (B = 0) is the kernel of the model without them."""
    model = tiny_classifier("bert", "prompt", 2)
    batches = {"train": tiny_batch(5), "test": tiny_batch(3, length=6, seed=2)}
    before = empirical_ntk_fn(model, implementation=implementation, show_progress=False)(batches["test"],
                                                                                           batches["train"])
    add_lora(model, rank=2, alpha=4, target_modules=("query", "value"), seed=0)
    requests = [("sgd", "train", "train", "no_lora"), ("sgd", "test", "train", "no_lora"),
                ("signgd", "test", "train", "no_lora"), ("sgd", "train", "train", "lora_head"),
                ("sgd", "test", "train", "lora")]
    got = empirical_kernels(model, batches, requests, implementation=implementation, show_progress=False)
    for kind, rows, cols, params in requests:
        ntk = empirical_ntk_fn(model, kind=kind, params=params, implementation=implementation, show_progress=False)
        expected = ntk(batches[rows], None if rows == cols else batches[cols])
        assert rel_err(got[kind, rows, cols, params], expected) <= 1e-12, (kind, rows, cols, params)
    assert rel_err(got["sgd", "test", "train", "no_lora"], before) <= 1e-12
    assert rel_err(got["sgd", "test", "train", "lora"], before) > 0.5  # a different kernel, not a copy


KERNEL_DIGEST = """
import hashlib, sys
sys.path.insert(0, {tests!r})
from tiny_models import tiny_batch, tiny_classifier
from kernelft.entk import empirical_kernels
model = tiny_classifier("bert", "prompt", 2).float()
batches = {{"train": tiny_batch(6, seed=0), "test": tiny_batch(4, length=6, seed=1)}}
out = empirical_kernels(model, batches, [("sgd", "train", "train"), ("sgd", "test", "train")], implementation="hooks",
                        show_progress=False)
print(hashlib.sha1(b"".join(v.tobytes() for v in out.values())).hexdigest())
"""


def test_kernels_are_bit_identical_across_processes():
    """Same model and inputs, two Python processes with different string hashes: the same bits (the shares of
    the parameters were once added in a set's order, which follows PYTHONHASHSEED: 1e-16 apart per run, and
    F6's synthetic slopes, which amplify it, 0.007 apart)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = KERNEL_DIGEST.format(tests=str(Path(__file__).resolve().parents[1]))
    digests = set()
    for hash_seed in ("1", "2"):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert run.returncode == 0, run.stderr[-2000:]
        digests.add(run.stdout.strip())
    assert len(digests) == 1
