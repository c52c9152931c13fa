"""F6 and F7 captions name the stopping convention, the R² target and the pseudo-truth in use: they are
rendered by `snakemake --report` with Jinja2 from the rule's params, here with stand-in params."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
from docutils.core import publish_parts

from kernelft.core.claims import FAILS, HOLDS, UNDECIDED

REPORT = Path(__file__).resolve().parents[2] / "workflow" / "report" / "earlystop"


def render(name: str, **params) -> str:
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string((REPORT / name).read_text())
    rst = text.render(snakemake=SimpleNamespace(params=SimpleNamespace(**params)))
    # halt on any docutils warning (a stray |x| substitution, a broken literal)
    publish_parts(rst, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})
    return rst


@pytest.mark.parametrize("convention", ["first_crossing", "before_crossing"])
@pytest.mark.parametrize("r2_target", ["labels", "pseudo_truth"])
def test_f6_caption_states_the_conventions_in_use(convention, r2_target):
    text = render("F6.rst", stopping_convention=convention, r2_target=r2_target, r2_methods=["pinv", "ridge"],
                  pseudo_truth_size=128)
    assert f"``earlystop.stopping_convention: {convention}``" in text
    assert f"``earlystop.r2_target: {r2_target}``" in text
    assert ("last step before the first T" in text) == (convention == "before_crossing")
    assert "``T = T[Tind] - 1``" in text and "128 held-out pool examples" in text and "{{" not in text


@pytest.mark.parametrize("target", ["pseudo_truth", "labels"])
def test_f7_caption_says_what_the_pseudo_truth_is(target):
    text = render("F7.rst", stopping_convention="before_crossing", pseudo_truth_size=96, n_test=128,
                  test_target=target)
    assert ("96 pool examples that are set aside after the 128 test examples" in text) == (target == "pseudo_truth")
    assert "the step before the rule's first crossing" in text


def test_f6_caption_defines_the_verdicts_it_states():
    text = render("F6.rst", stopping_convention="first_crossing", r2_target="labels", r2_methods=["ridge"],
                  pseudo_truth_size=128)
    for verdict in (HOLDS, FAILS, UNDECIDED):
        assert f"*{verdict}*" in text
    assert "``kernelft.earlystop.rates.slope_verdict``" in text and "between 2s and 0" in text
