"""Every eNTK kind on every model family, against the naive per-example kernel, in float64.

One tiny random checkpoint per family (tests/tiny_models.py), loaded from its folder through
``load_classifier`` as a user would, both heads, a padded batch of texts of different lengths.
The hook engine covers seven families; ALBERT (layers shared across depth), MPNet (relative
attention bias shared by the batch) and DeBERTa-v2 (relative position projections shared by the
batch) are refused by it and computed by the Jacobian engine, which ``auto`` falls back to.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import CAUSAL, FAMILIES

from kernelft.entk import Implementation, KernelKind, add_lora, empirical_ntk_fn, naive_kernel
from kernelft.entk.common import UnsupportedModel
from kernelft.entk.kinds import accumulate, resolve_output, to_output_array
from kernelft.entk.naive import naive_gradients
from kernelft.entk.params import select_parameters
from kernelft.text.encoding import encode
from kernelft.text.models import HeadSpec, load_classifier, load_tokenizer

TOL = 1e-10
TEXTS = ["great flight and a crew", "terrible delay", "the food was great , what a day", "lost my bag", "okay"]
HOOKS_REFUSE = {"albert", "mpnet", "deberta-v2"}


def _setup(tiny_checkpoint, family: str, head_kind: str, num_classes: int = 2):
    folder = tiny_checkpoint(family)
    words = ("terrible", "great", "okay")[:num_classes]
    head = HeadSpec(head_kind, num_classes, words, "{sentence} It was {mask} .", causal=family in CAUSAL)
    model = load_classifier(folder, head, dtype=torch.float64)
    return model, encode(TEXTS, load_tokenizer(folder), head, 24)


def _naive(model, batch, kind: KernelKind):
    output = resolve_output("auto", model(**batch).shape[-1])
    g = naive_gradients(model, select_parameters(model, "all"), batch, output)
    kernel = torch.zeros(kind.slots, len(g), len(g), g.shape[1], g.shape[1], dtype=torch.float64)
    accumulate(kernel, slice(None), slice(None), g, g, kind)
    return to_output_array(kernel, kind)


def _rel(a, b) -> float:
    return float(abs(a - b).max() / abs(b).max())


@pytest.mark.parametrize("head", ["prompt", "linear"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_kind_and_engine_matches_the_naive_kernel(tiny_checkpoint, family, head):
    model, batch = _setup(tiny_checkpoint, family, head)
    assert batch["attention_mask"].sum(1).unique().numel() > 1  # padded rows
    for kind in KernelKind:
        expected = _naive(model, batch, kind)
        engines = [Implementation.AUTO, Implementation.JACOBIAN]
        if family in HOOKS_REFUSE:
            with pytest.raises(UnsupportedModel):
                empirical_ntk_fn(model, kind=kind, implementation="hooks", show_progress=False)(batch)
        else:
            engines.append(Implementation.HOOKS)
        for engine in engines:
            kernel = empirical_ntk_fn(model, kind=kind, implementation=engine, show_progress=False)(batch)
            assert _rel(kernel, expected) <= TOL, (kind, engine)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_cross_kernel_and_multiclass_outputs(tiny_checkpoint, family):
    model, batch = _setup(tiny_checkpoint, family, "prompt", num_classes=3)
    rows = {key: value[:2] for key, value in batch.items()}
    cols = {key: value[2:] for key, value in batch.items()}
    kernel = empirical_ntk_fn(model, show_progress=False)(rows, cols)
    assert kernel.shape == (2, 3, 3, 3)
    assert _rel(kernel, naive_kernel(model, rows, cols)) <= TOL


@pytest.mark.parametrize("head", ["prompt", "linear"])
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_do_not_depend_on_padding(tiny_checkpoint, family, head):
    """Padded rows give the logits of the example alone; a decoder also reads the same token when the
    batch is padded on the left."""
    model, batch = _setup(tiny_checkpoint, family, head)
    lengths = batch["attention_mask"].sum(1)
    with torch.no_grad():
        padded = model(**batch)
        rows = [{key: value[i : i + 1, : lengths[i]] for key, value in batch.items()} for i in range(len(TEXTS))]
        alone = torch.cat([model(**row) for row in rows])
        torch.testing.assert_close(padded, alone, rtol=1e-7, atol=1e-9)
        if family in CAUSAL:
            shifts = batch["attention_mask"].shape[1] - lengths
            left = {k: torch.stack([v[i].roll(int(shifts[i])) for i in range(len(TEXTS))]) for k, v in batch.items()}
            torch.testing.assert_close(model(**left), padded, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("family", ["gpt2", "llama", "roberta"])
def test_lora_kernel_of_any_family_matches_the_naive_kernel(tiny_checkpoint, family):
    """LoRA adapters on peft's default targets of the architecture (GPT-2's Conv1D c_attn, Llama's
    q_proj/v_proj, RoBERTa's query/value); at B = 0 the kernel is that of ∇_B."""
    model, batch = _setup(tiny_checkpoint, family, "prompt")
    add_lora(model, rank=2, alpha=4)
    model = model.double()
    expected = naive_kernel(model, batch, params="lora")
    for engine in ("hooks", "jacobian"):
        kernel = empirical_ntk_fn(model, params="lora", implementation=engine, show_progress=False)(batch)
        assert _rel(kernel, expected) <= TOL


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_projected_kernel_is_the_same_in_both_engines(tiny_checkpoint, family):
    """Both engines project every coordinate the same way (GPT-2's Conv1D weights included), so the
    CountSketch kernel agrees to rounding; it estimates the exact one."""
    model, batch = _setup(tiny_checkpoint, family, "prompt")
    kernels = [empirical_ntk_fn(model, implementation=engine, projection_dim=4096, show_progress=False)(batch)
               for engine in ("hooks", "jacobian")]
    assert _rel(kernels[0], kernels[1]) <= TOL
    assert _rel(kernels[0], naive_kernel(model, batch)) < 0.5


@pytest.mark.parametrize("family", ["gpt2", "gpt-neo", "llama", "distilbert"])
def test_parameter_sets_find_every_familys_embeddings_and_blocks(tiny_checkpoint, family):
    model, _ = _setup(tiny_checkpoint, family, "linear")
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    kept = select_parameters(model, "no_embeddings")
    assert not embeddings & {id(p) for p in kept.values()}
    last = select_parameters(model, "last_layers:1")
    assert "head.linear.weight" in last and len(last) < len(kept)
    assert all(".1." in name for name in last if not name.startswith("head."))


@pytest.mark.parametrize("family", ["gpt2", "gpt-neo", "llama"])
def test_factored_projection_is_the_same_in_both_engines_on_decoders(tiny_checkpoint, family):
    """LoGra's P_out ∇_W P_inᵀ of every Linear (and GPT-2 Conv1D) weight, the rest exact: the hook
    engine (which never forms ∇_W) and the Jacobian engine (which projects the formed ∇_W) agree."""
    from kernelft.entk.factored import linear_weight_shapes

    model, batch = _setup(tiny_checkpoint, family, "prompt")
    shapes = linear_weight_shapes(model, dict(model.named_parameters()))
    assert len(shapes) >= 8 and any(transposed for *_, transposed in shapes.values()) == (family == "gpt2")
    kernels = [empirical_ntk_fn(model, implementation=engine, projection="factored", projection_dim=64,
                                show_progress=False)(batch) for engine in ("hooks", "jacobian")]
    assert _rel(kernels[0], kernels[1]) <= TOL
    assert _rel(kernels[0], naive_kernel(model, batch)) < 1.0
