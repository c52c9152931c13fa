"""eNTK engines against the naive per-example autograd loop, in float64, on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_batch, tiny_classifier

from kernelft.entk import Implementation, KernelKind, ParamSet, ParamSpec, add_lora, empirical_ntk_fn, naive_kernel

TOL = 1e-10


ENGINES = [impl for impl in Implementation if impl is not Implementation.AUTO]
PARAM_SETS = [ParamSet.ALL, ParamSet.NO_EMBEDDINGS, ParamSpec(ParamSet.LAST_LAYERS, 1), ParamSet.LORA]
MODELS = [
    ("bert", "prompt", 2, False),
    ("roberta", "prompt", 3, False),
    ("bert", "prompt", 2, True),
    ("bert", "linear", 3, False),
    ("roberta", "linear", 2, False),
]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def build(arch, head, classes, mlm, params):
    model = tiny_classifier(arch, head, classes, mlm)
    if params is ParamSet.LORA:
        add_lora(model, rank=2, target_modules=("query", "value", "dense"))
        with torch.no_grad():  # B = 0 at init makes ∇_A vanish; give B values to test both
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return model


@pytest.mark.parametrize("params", PARAM_SETS, ids=str)
@pytest.mark.parametrize("setup", MODELS, ids=lambda s: f"{s[0]}-{s[1]}{s[2]}{'-mlm' if s[3] else ''}")
def test_sgd_matches_naive(setup, params):
    model = build(*setup, params)
    batch = tiny_batch(5)
    expected = naive_kernel(model, batch, kind=KernelKind.SGD, params=params)
    assert expected.shape == ((5, 5) if setup[2] == 2 else (5, 5, 3, 3))
    for implementation in Implementation:
        got = empirical_ntk_fn(model, params=params, implementation=implementation, show_progress=False)(batch)
        assert got.shape == expected.shape
        assert rel_err(got, expected) <= TOL, implementation


@pytest.mark.parametrize("kind", list(KernelKind), ids=lambda k: k.value)
@pytest.mark.parametrize("setup", MODELS[:4], ids=lambda s: f"{s[0]}-{s[1]}{s[2]}{'-mlm' if s[3] else ''}")
def test_every_kind_self_and_cross(setup, kind):
    model = build(*setup, ParamSet.ALL)
    batch1, batch2 = tiny_batch(5, seed=0), tiny_batch(3, length=6, seed=1)
    for b2 in (None, batch2):
        expected = naive_kernel(model, batch1, b2, kind=kind)
        for implementation in ENGINES:
            ntk = empirical_ntk_fn(model, kind=kind, implementation=implementation, show_progress=False)
            assert rel_err(ntk(batch1, b2), expected) <= TOL, implementation


@pytest.mark.parametrize("implementation", ENGINES, ids=lambda i: i.value)
def test_small_budget_blocks_give_the_same_kernel(implementation):
    model = build("bert", "prompt", 2, False, ParamSet.ALL)
    batch = tiny_batch(7)
    tiny_budget = 2e-4  # GB: forces parameter groups and example chunks
    for b2 in (None, tiny_batch(4, seed=3)):
        ntk = empirical_ntk_fn(model, implementation=implementation, max_memory_gb=tiny_budget, show_progress=False)
        expected = naive_kernel(model, batch, b2)
        assert rel_err(ntk(batch, b2), expected) <= TOL


def test_sgd_kernel_is_symmetric_psd():
    model = build("roberta", "prompt", 2, False, ParamSet.ALL)
    kernel = empirical_ntk_fn(model, show_progress=False)(tiny_batch(8))
    np.testing.assert_allclose(kernel, kernel.T, rtol=0, atol=1e-12 * np.abs(kernel).max())
    assert np.linalg.eigvalsh(kernel).min() >= -1e-10 * np.abs(kernel).max()


def test_asymmetric_pair_layout():
    model = build("bert", "linear", 2, False, ParamSet.ALL)
    batch = tiny_batch(4)
    pair = empirical_ntk_fn(model, kind=KernelKind.ASYMMETRIC_SIGNGD, show_progress=False)(batch)
    signgd = empirical_ntk_fn(model, kind=KernelKind.SIGNGD, show_progress=False)(batch)
    assert pair.shape == (2, 4, 4)
    np.testing.assert_allclose(pair[1], signgd, rtol=1e-12)
    np.testing.assert_allclose(pair[0], signgd.T, rtol=1e-12)


def test_errors_name_the_problem():
    model = build("bert", "linear", 3, False, ParamSet.ALL)
    with pytest.raises(ValueError, match="lora"):
        empirical_ntk_fn(model, params="lora")
    with pytest.raises(ValueError, match="last_layers"):
        empirical_ntk_fn(model, params="last_layers:x")
    with pytest.raises(ValueError, match="difference"):
        empirical_ntk_fn(model, output="difference", show_progress=False)(tiny_batch(2))



def test_add_lora_refuses_adapters_that_change_the_outputs(monkeypatch):
    """B ≠ 0 at injection (a peft whose init differs) would make "the pretrained model's kernel" wrong."""
    import peft

    inject = peft.inject_adapter_in_model

    def nonzero_b(config, model):
        model = inject(config, model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.fill_(0.1)
        return model

    add_lora(tiny_classifier("bert", "prompt", 2, False), rank=2)  # peft's own init: B = 0
    monkeypatch.setattr(peft, "inject_adapter_in_model", nonzero_b)
    with pytest.raises(RuntimeError, match="B = 0"):
        add_lora(tiny_classifier("bert", "prompt", 2, False), rank=2)

class RawHead(torch.nn.Module):
    """A head that uses a bare Parameter (no Linear): the hook engine cannot see it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)))

    def forward(self, h):
        return torch.tanh(h) @ self.w


def test_auto_falls_back_when_hooks_cannot_see_a_parameter():
    from kernelft.entk.common import UnsupportedModel
    from kernelft.text.models import TextClassifier

    model = TextClassifier(build("bert", "linear", 2, False, ParamSet.ALL).backbone, RawHead()).eval()
    batch = tiny_batch(4)
    expected = naive_kernel(model, batch)
    assert rel_err(empirical_ntk_fn(model, show_progress=False)(batch), expected) <= TOL
    with pytest.raises(UnsupportedModel, match="head.w"):
        empirical_ntk_fn(model, implementation=Implementation.HOOKS, show_progress=False)(batch)


@pytest.mark.parametrize("share", [0.0, 2.0], ids=["all-dense", "all-pairs"])
@pytest.mark.parametrize("kind", [KernelKind.SGD, KernelKind.SIGNGD], ids=lambda k: k.value)
def test_embedding_rows_dense_and_pair_paths_agree(monkeypatch, share, kind):
    import kernelft.entk.rows as rows

    monkeypatch.setattr(rows, "DENSE_SHARE", share)
    model = build("bert", "prompt", 3, False, ParamSet.ALL)
    batch1, batch2 = tiny_batch(6), tiny_batch(4, seed=7)
    for b2 in (None, batch2):
        got = empirical_ntk_fn(model, kind=kind, implementation=Implementation.HOOKS, show_progress=False)(batch1, b2)
        assert rel_err(got, naive_kernel(model, batch1, b2, kind=kind)) <= TOL


def test_binary_task_with_both_logits_kept():
    model = build("bert", "prompt", 2, True, ParamSet.ALL)
    batch = tiny_batch(4)
    expected = naive_kernel(model, batch, output="logits")
    assert expected.shape == (4, 4, 2, 2)
    for implementation in ENGINES:
        got = empirical_ntk_fn(model, output="logits", implementation=implementation, show_progress=False)(batch)
        assert rel_err(got, expected) <= TOL


def test_tiny_models_give_logits():
    batch = tiny_batch(4)
    for arch, head, classes, mlm in [("bert", "prompt", 2, True), ("roberta", "linear", 3, False)]:
        logits = tiny_classifier(arch, head, classes, mlm)(batch["input_ids"], batch["attention_mask"])
        assert logits.shape == (4, classes) and logits.dtype == torch.float64


@pytest.mark.parametrize("kind", list(KernelKind), ids=lambda k: k.value)
@pytest.mark.parametrize("budget", [4.0, 1e-6], ids=["row-blocks", "example-chunks"])
def test_upper_triangle_and_chunked_products_give_the_full_kernel(monkeypatch, kind, budget):
    """Symmetric self-kernels multiply only blocks on and above the diagonal; with UPPER_BLOCK = 2 and
    capture chunks of 3 the blocks, the token-pair chunks and (tiny budget) the example chunks of the
    formed Linear gradients all cross the diagonal."""
    import kernelft.entk.hooks_engine as hooks_engine
    import kernelft.entk.kinds as kinds
    import kernelft.entk.products as products

    monkeypatch.setattr(kinds, "UPPER_BLOCK", 2)
    monkeypatch.setattr(products, "UPPER_BLOCK", 2)
    monkeypatch.setattr(hooks_engine, "CAPTURE_CHUNK", 3)
    model = build("bert", "prompt", 3, False, ParamSet.ALL)
    batch1, batch2 = tiny_batch(7), tiny_batch(5, seed=4)
    ntk = empirical_ntk_fn(model, kind=kind, implementation="hooks", max_memory_gb=budget, show_progress=False)
    for b2 in (None, batch2):
        assert rel_err(ntk(batch1, b2), naive_kernel(model, batch1, b2, kind=kind)) <= TOL
