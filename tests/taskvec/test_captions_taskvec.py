"""The F13 caption states the test size, the precision, the interval method and how verdicts are read: it is
rendered by `snakemake --report` with Jinja2 from the rule's params, here with stand-in params."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from docutils.core import publish_parts

from kernelft.core.claims import METHOD

CAPTION = Path(__file__).resolve().parents[2] / "workflow" / "report" / "taskvec" / "F13.rst"


def render(**taskvec) -> str:
    section = {"n_test": 256, "eval_dtype": "bfloat16", "lambdas": [0.5, 1.0, 1.5], "negation_lambdas": [0.5, 1.0],
               "similar_pair": "similar", "pairs": [], **taskvec}
    params = SimpleNamespace(taskvec=section, claims={"level": 0.95, "n_boot": 2000, "margin": 0.05}, seed=3,
                             method=METHOD)
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(CAPTION.read_text())
    rst = text.render(snakemake=SimpleNamespace(params=params))
    publish_parts(rst, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})
    return rst


@pytest.mark.parametrize("eval_dtype", ["bfloat16", "model"])
def test_f13_caption_states_method_size_and_verdict_rule(eval_dtype):
    text = render(eval_dtype=eval_dtype)
    assert METHOD in text and "2000 draws" in text and "global seed 3" in text and "95 % intervals" in text
    assert "same 256 label-balanced test examples" in text and "±0.05" in text
    assert "holds when" in text and "undecided at this size" in text and "does not hold" in text
    assert ("bfloat16 autocast" in text) == (eval_dtype == "bfloat16") and "{{" not in text
    assert "similar pair (similar)" in text
    assert "similar pair" not in render(similar_pair=None)
