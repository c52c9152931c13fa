"""Prompt templates (LM-BFF; Gao et al. 2021): parsing and the checks a model family needs.

A template is text with the slots ``{sentence}`` (once), ``{sentence2}`` (once in a sentence-pair task,
else never) and ``{mask}``, e.g. SST-2's ``"{sentence} It was {mask} ."`` or MNLI's
``"{sentence:drop_last}?{mask}, {sentence2:lower_first}"``. A sentence slot may carry modifiers after a
colon, comma-separated, which are LM-BFF's template parts (princeton-nlp/LM-Kernel-FT,
``src/dataset.py``, ``tokenize_multipart_input``):

- ``drop_last``: the text without its last character (``*sent-_i*``: "Is it?" → "Is it");
- ``lower_first`` / ``upper_first``: the first character in lower / upper case (``*sentl_i*``, ``*sentu_i*``).

A slot that follows whitespace in the template is encoded with a leading space (LM-BFF's ``*+sent_i*``),
which is how a byte-level BPE tokenizer (RoBERTa, GPT-2) sees a word inside a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODIFIERS = {
    "drop_last": lambda text: text[:-1],
    "lower_first": lambda text: text[:1].lower() + text[1:],
    "upper_first": lambda text: text[:1].upper() + text[1:],
}
"""Text transformations a sentence slot may name (LM-BFF's ``sent-``, ``sentl``, ``sentu``)."""

SLOTS = ("sentence", "sentence2", "mask")
_SLOT = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Slot:
    """A ``{...}`` of a template: ``name`` in :data:`SLOTS`, ``modifiers`` in :data:`MODIFIERS`."""

    name: str
    modifiers: tuple[str, ...] = ()

    def apply(self, text: str) -> str:
        for modifier in self.modifiers:
            text = MODIFIERS[modifier](text)
        return text


def parse_template(template: str) -> list[str | Slot]:
    """The template as literal strings and :class:`Slot` s in order (empty literals left out).

    A ``ValueError`` names an unknown slot or modifier, or a modifier on ``{mask}``.
    """
    parts: list[str | Slot] = []
    position = 0
    for match in _SLOT.finditer(template):
        if match.start() > position:
            parts.append(template[position : match.start()])
        name, _, spec = match.group(1).partition(":")
        if name not in SLOTS:
            raise ValueError(f"template {template!r}: unknown slot {{{match.group(1)}}}; slots are {SLOTS}")
        modifiers = tuple(m.strip() for m in spec.split(",")) if spec else ()
        unknown = [m for m in modifiers if m not in MODIFIERS]
        if unknown or (name == "mask" and modifiers):
            raise ValueError(
                f"template {template!r}: modifiers {list(modifiers)} of {{{name}}}; sentence slots take "
                f"{sorted(MODIFIERS)}, {{mask}} takes none"
            )
        parts.append(Slot(name, modifiers))
        position = match.end()
    if position < len(template):
        parts.append(template[position:])
    return parts


def check_template(template: str, causal: bool | None, pair: bool = False) -> None:
    """A ``ValueError`` saying what a template needs: ``{sentence}`` once; ``{sentence2}`` once for a
    sentence-pair task (``pair``), else never; ``{mask}`` once for a masked LM; for a causal LM
    ``{mask}`` at most once, after every sentence slot (its prompt ends there). ``causal=None`` (the
    family is not known yet, e.g. a hub id before download) checks what every family needs, and
    ``{mask}`` at most once."""
    parts = parse_template(template)
    names = [part.name for part in parts if isinstance(part, Slot)]
    if names.count("sentence") != 1:
        raise ValueError(f"template {template!r} must contain {{sentence}} exactly once")
    if names.count("sentence2") != (1 if pair else 0):
        need = "exactly once: the task has a second text column" if pair else "only in a sentence-pair task"
        raise ValueError(f"template {template!r} must contain {{sentence2}} {need} (tasks.<task>.text_column2)")
    masks = names.count("mask")
    if causal is None:
        if masks > 1:
            raise ValueError(f"template {template!r} must contain {{mask}} at most once")
        return
    if not causal and masks != 1:
        raise ValueError(
            f"template {template!r} must contain {{mask}} exactly once: a masked LM's prompt head reads the "
            "mask position (a template without {mask} is for causal LMs, whose label word follows the prompt)"
        )
    if causal and (masks > 1 or (masks == 1 and names[-1] != "mask")):
        raise ValueError(
            f"template {template!r}: a causal LM's prompt ends at {{mask}}, so {{mask}} may appear at most once, "
            "after every sentence slot"
        )
