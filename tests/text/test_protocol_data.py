"""The papers' data protocol: own test splits with their class mix, k-shot dev sets, sentence pairs and
LM-BFF's template slots (Malladi et al. 2023 through princeton-nlp/LM-Kernel-FT)."""

import pandas as pd
import pytest

from kernelft.text.data import DataError, TaskSpec, draw_test, load_hub, sample_dev, sample_train, task_splits
from kernelft.text.encoding import encode
from kernelft.text.models import HeadSpec, load_tokenizer
from kernelft.text.templates import Slot, check_template, parse_template


def write_hub_folder(root, config_name, splits):
    """A local dataset folder laid out as a hub repository (``<config>/<split>-00000-of-00001.parquet``
    and the README's ``configs``), so ``datasets.load_dataset(root, config_name, split=...)`` reads it."""
    (root / config_name).mkdir(parents=True, exist_ok=True)
    files = []
    for split, frame in splits.items():
        frame.to_parquet(root / config_name / f"{split}-00000-of-00001.parquet")
        files.append(f"  - split: {split}\n    path: {config_name}/{split}-*")
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config_name}\n  data_files:\n"
                                    + "\n".join(files) + "\n---\n")
    return str(root)


def nli_frame(n, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return pd.DataFrame({"premise": [f"The cat sat on mat {i}." for i in range(n)],
                         "hypothesis": [f"A cat is number {i}" for i in range(n)], "label": labels, "idx": range(n)})


def test_templates_parse_lm_bff_slots():
    parts = parse_template("{sentence:drop_last}?{mask}, {sentence2:lower_first}")
    assert parts == [Slot("sentence", ("drop_last",)), "?", Slot("mask"), ", ", Slot("sentence2", ("lower_first",))]
    assert Slot("sentence", ("drop_last",)).apply("Is it?") == "Is it"
    assert Slot("sentence2", ("lower_first",)).apply("The cat") == "the cat"
    check_template("{sentence}{mask}, {sentence2:lower_first}", causal=False, pair=True)
    with pytest.raises(ValueError, match="sentence2.*exactly once"):
        check_template("{sentence} It was {mask} .", causal=False, pair=True)
    with pytest.raises(ValueError, match="only in a sentence-pair task"):
        check_template("{sentence} {sentence2} {mask}", causal=False)
    with pytest.raises(ValueError, match="unknown slot"):
        check_template("{sentence} {label} {mask}", causal=False)
    with pytest.raises(ValueError, match="modifiers"):
        check_template("{sentence:shout} {mask}", causal=False)
    with pytest.raises(ValueError, match="after every sentence slot"):
        check_template("{sentence} ? {mask} , {sentence2}", causal=True, pair=True)


def test_pair_prompt_encodes_like_lm_bff(tiny_roberta_dir):
    """MNLI's LM-BFF template *cls**sent-_0*?*mask*,*+sentl_1**sep+*: the premise without its last
    character, '?', the mask, ',', then ' ' + the hypothesis with a lower-case first letter."""
    tokenizer = load_tokenizer(tiny_roberta_dir)
    head = HeadSpec(kind="prompt", num_classes=3, label_words=("great", "the", "terrible"),
                    template="{sentence:drop_last}?{mask}, {sentence2:lower_first}")
    premise, hypothesis = "the movie was great.", "The flight was terrible"
    batch = encode([premise], tokenizer, head, 64, texts2=[hypothesis])

    def enc(text):
        return tokenizer(text, add_special_tokens=False).input_ids

    expected = [tokenizer.cls_token_id, *enc(premise[:-1]), *enc("?"), tokenizer.mask_token_id, *enc(","),
                *enc(" the flight was terrible"), tokenizer.sep_token_id]
    assert batch["input_ids"][0].tolist() == expected
    # Both sentences are cut, the longest first, and the template words stay.
    short = encode([premise * 4], tokenizer, head, 24, texts2=[hypothesis])
    ids = short["input_ids"][0].tolist()
    assert len(ids) == 24 and ids.count(tokenizer.mask_token_id) == 1 and ids[-1] == tokenizer.sep_token_id
    # The linear head takes the tokenizer's own pair encoding.
    linear = HeadSpec(kind="linear", num_classes=3)
    assert encode([premise], tokenizer, linear, 64, texts2=[hypothesis])["input_ids"][0].tolist() == (
        tokenizer(premise, hypothesis).input_ids)


def test_slot_after_whitespace_gets_a_leading_space(tiny_roberta_dir):
    """TREC's *cls**mask*:*+sent_0**sep+*: the sentence after ': ' is encoded as ' ' + sentence; a sentence
    at the template's start is not (SST-2's *sent_0*), so single-sentence prompts encode as before."""
    tokenizer = load_tokenizer(tiny_roberta_dir)
    head = HeadSpec(kind="prompt", num_classes=2, label_words=("great", "terrible"), template="{mask}: {sentence}")
    ids = encode(["great flight"], tokenizer, head, 32)["input_ids"][0].tolist()
    enc = tokenizer(" great flight", add_special_tokens=False).input_ids
    assert ids == [tokenizer.cls_token_id, tokenizer.mask_token_id, *tokenizer(":", add_special_tokens=False).input_ids,
                   *enc, tokenizer.sep_token_id]
    sst2 = HeadSpec(kind="prompt", num_classes=2, label_words=("great", "terrible"),
                    template="{sentence} It was {mask} .")
    ids = encode(["great flight"], tokenizer, sst2, 32)["input_ids"][0].tolist()
    assert ids == [tokenizer.cls_token_id, *tokenizer("great flight", add_special_tokens=False).input_ids,
                   *tokenizer(" It was <mask> .", add_special_tokens=False).input_ids, tokenizer.sep_token_id]


def test_hub_pair_task_with_its_own_test_split(tmp_path):
    """A local folder laid out like glue/mnli: train and validation_matched, premise/hypothesis, label ids
    0..2 and -1 (no label, dropped). The test set is the validation split, at most test_size rows in their
    natural class mix; the pool is the whole train split."""
    train, test = nli_frame(90), nli_frame(40, seed=1)
    test.loc[3, "label"] = -1
    root = write_hub_folder(tmp_path / "glue", "mnli", {"train": train, "validation_matched": test})
    spec = TaskSpec.from_config("mnli", {
        "source": "hub", "path": root, "name": "mnli", "split": "train", "test_split": "validation_matched",
        "text_column": "premise", "text_column2": "hypothesis", "labels": ["entailment", "neutral", "contradiction"],
        "label_words": ["Yes", "Maybe", "No"], "template": "{sentence:drop_last}?{mask}, {sentence2:lower_first}",
    })
    test_set, pool = task_splits(spec, test_size=30, seed=42)
    assert len(pool) == 90 and list(pool.columns) == ["text", "label", "topic", "text2"]
    assert len(test_set) == 30 and set(test_set["text"]) <= set(test["premise"]) and (test_set["label"] >= 0).all()
    assert test_set["text2"].tolist() == [test.set_index("premise").loc[t, "hypothesis"] for t in test_set["text"]]
    full, _ = task_splits(spec, test_size=1000, seed=42)
    assert len(full) == 39  # the whole split but the unlabelled row
    # The draw is LM-BFF's: pandas' sample with the seed, here kept in the split's order.
    labelled = load_hub(root, "mnli", "validation_matched", "premise", "label", None, "hypothesis")
    assert test_set["text"].tolist() == labelled.sample(n=30, random_state=42).sort_index()["text"].tolist()
    with pytest.raises(DataError, match="text_column2"):
        load_hub(root, "mnli", "train", "premise", "label", None, "no_such_column")


def test_dev_set_is_the_next_k_of_each_label():
    toy_table = pd.DataFrame({"text": [f"example {i}" for i in range(32)], "label": [i % 2 for i in range(32)],
                              "topic": ""})
    for n in (4, 8):
        train, dev = sample_train(toy_table, n, 13, 2), sample_dev(toy_table, n, 13, 2)
        assert dev["label"].value_counts().to_dict() == {0: n // 2, 1: n // 2}
        assert not set(train["text"]) & set(dev["text"])
    # LM-BFF's layout: the dev set of k is the part of the train set of 2k that the train set of k lacks.
    train4, train8, dev4 = (sample_train(toy_table, 4, 13, 2), sample_train(toy_table, 8, 13, 2),
                            sample_dev(toy_table, 4, 13, 2))
    assert set(dev4["text"]) | set(train4["text"]) == set(train8["text"])
    with pytest.raises(DataError, match="dev set"):
        sample_dev(toy_table, len(toy_table), 0, 2)


def test_small_classes_work_with_an_own_test_split():
    """TREC: ABBR has 86 training rows, too few for a balanced test draw of 166 per label from train; with
    its own test split the test set is drawn from there and every class keeps its training rows."""
    rare = pd.DataFrame({"text": [f"q{i}" for i in range(40)], "label": [0] * 4 + [1] * 36, "topic": ""})
    drawn = draw_test(rare, 10, seed=42)
    assert len(drawn) == 10 and drawn.index.tolist() == list(range(10))
    assert draw_test(rare, 100, seed=42).equals(rare)
