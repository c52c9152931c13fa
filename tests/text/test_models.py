import pytest
import torch

from kernelft.text.checkpoints import PACKAGED_MODEL, ModelNotFoundError, resolve_model_path
from kernelft.text.encoding import encode
from kernelft.text.models import (
    EmbeddingReadout,
    HeadSpec,
    LabelWordHead,
    LinearHead,
    label_token_ids,
    load_classifier,
    load_tokenizer,
)


def test_packaged_model_resolves_to_a_folder():
    assert resolve_model_path(PACKAGED_MODEL) + "/config.json"


def test_unknown_packaged_model_names_the_key():
    with pytest.raises(ModelNotFoundError, match="model.name"):
        resolve_model_path("packaged:nope")


def test_unknown_hub_id_offline_gives_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="model.name='no-such-org/no-such-model'"):
        load_tokenizer("no-such-org/no-such-model")


@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_prompt_encoding_keeps_the_mask_when_truncating(fixture, request):
    folder = request.getfixturevalue(fixture)
    tokenizer = load_tokenizer(folder)
    head = HeadSpec("prompt", 2, ("terrible", "great"))
    long_text = " ".join(["great flight"] * 50)
    batch = encode([long_text, "what a day"], tokenizer, head, max_length=16)
    assert batch["input_ids"].shape == (2, 16)
    assert ((batch["input_ids"] == tokenizer.mask_token_id).sum(1) == 1).all()
    assert batch["attention_mask"][1].sum() < 16  # the short one is padded


def test_prompt_head_without_mlm_reads_tied_embeddings(tiny_bert_dir):
    head = HeadSpec("prompt", 2, ("terrible", "great"))
    model = load_classifier(tiny_bert_dir, head, dtype=torch.float64)
    tokenizer = load_tokenizer(tiny_bert_dir)
    batch = encode(["great flight", "terrible seat"], tokenizer, head, 16)
    assert isinstance(model.head, EmbeddingReadout)
    hidden = model.hidden_states(**batch)
    position = (batch["input_ids"] == tokenizer.mask_token_id).int().argmax(1)
    h_mask = hidden[torch.arange(2), position]
    embeddings = model.backbone.get_input_embeddings().weight
    ids = label_token_ids(tokenizer, head.label_words)
    expected = h_mask @ embeddings[ids].T
    torch.testing.assert_close(model(**batch), expected)


def test_prompt_head_uses_the_mlm_head_when_present(tiny_roberta_dir):
    from transformers import AutoModelForMaskedLM

    head = HeadSpec("prompt", 2, ("terrible", "great"))
    model = load_classifier(tiny_roberta_dir, head, dtype=torch.float64)
    tokenizer = load_tokenizer(tiny_roberta_dir)
    assert isinstance(model.head, LabelWordHead)
    batch = encode(["great flight", "terrible seat and terrible food"], tokenizer, head, 16)
    reference = AutoModelForMaskedLM.from_pretrained(tiny_roberta_dir, attn_implementation="eager").double().eval()
    with torch.no_grad():
        logits = reference(**batch).logits
    position = (batch["input_ids"] == tokenizer.mask_token_id).int().argmax(1)
    ids = label_token_ids(tokenizer, head.label_words)
    expected = logits[torch.arange(2), position][:, ids]
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), expected)


def test_padding_does_not_change_the_logits(tiny_bert_dir):
    head = HeadSpec("linear", 2)
    model = load_classifier(tiny_bert_dir, head, seed=3, dtype=torch.float64)
    tokenizer = load_tokenizer(tiny_bert_dir)
    alone = encode(["great flight"], tokenizer, head, 16)
    padded = encode(["great flight", "what a terrible day and a terrible seat"], tokenizer, head, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(**alone)[0], model(**padded)[0])


def test_linear_head_is_seeded(tiny_bert_dir):
    head = HeadSpec("linear", 3)
    first = load_classifier(tiny_bert_dir, head, seed=1)
    second = load_classifier(tiny_bert_dir, head, seed=1)
    assert isinstance(first.head, LinearHead)
    torch.testing.assert_close(first.head.linear.weight, second.head.linear.weight)


def test_multi_token_label_word_names_the_key(tiny_bert_dir):
    tokenizer = load_tokenizer(tiny_bert_dir)
    with pytest.raises(ValueError, match="label_words"):
        label_token_ids(tokenizer, ("zebra",))


def test_trim_padding_drops_only_all_padding_columns_and_keeps_the_logits(tiny_bert_dir):
    from kernelft.text.encoding import trim_padding

    model = load_classifier(tiny_bert_dir, HeadSpec(kind="linear", num_classes=2), seed=3, dtype=torch.float64)
    batch = encode(["good movie", "a bad and boring movie"], load_tokenizer(tiny_bert_dir),
                   HeadSpec(kind="linear", num_classes=2), max_length=32)
    padded = {key: torch.nn.functional.pad(value, (0, 5)) for key, value in batch.items()}
    trimmed = trim_padding(padded)
    assert trimmed["input_ids"].shape == batch["input_ids"].shape
    model.eval()
    torch.testing.assert_close(model(**trimmed), model(**padded))


def test_causal_prompt_ends_where_the_label_word_follows(tiny_checkpoint):
    """A decoder's prompt stops at {mask} (what follows cannot change a next-token prediction); the
    logits are the causal LM's own next-token logits of the label words at the prompt's last token."""
    from transformers import AutoModelForCausalLM

    folder = tiny_checkpoint("gpt2")
    tokenizer = load_tokenizer(folder)
    with_mask = HeadSpec("prompt", 2, ("terrible", "great"), "{sentence} It was {mask} .", causal=True)
    without = HeadSpec("prompt", 2, ("terrible", "great"), "{sentence} It was", causal=True)
    texts = ["great flight", "terrible delay and a terrible seat"]
    batch = encode(texts, tokenizer, with_mask, 16)
    assert torch.equal(batch["input_ids"], encode(texts, tokenizer, without, 16)["input_ids"])
    last = batch["attention_mask"].sum(1) - 1
    assert tokenizer.decode(batch["input_ids"][0, : last[0] + 1]) == "great flight It was"
    model = load_classifier(folder, with_mask, dtype=torch.float64)
    reference = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").double().eval()
    with torch.no_grad():
        logits = reference(**batch).logits[torch.arange(2), last]
        expected = logits[:, label_token_ids(tokenizer, with_mask.label_words)]
        torch.testing.assert_close(model(**batch), expected)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_linear_head_of_a_decoder_reads_the_last_real_token(tiny_checkpoint, family):
    folder = tiny_checkpoint(family)
    head = HeadSpec("linear", 2, causal=True)
    model = load_classifier(folder, head, seed=0, dtype=torch.float64)
    batch = encode(["great flight", "terrible delay and a terrible seat"], load_tokenizer(folder), head, 16)
    last = batch["attention_mask"].sum(1) - 1
    with torch.no_grad():
        hidden = model.hidden_states(**batch)[torch.arange(2), last]
        torch.testing.assert_close(model(**batch), model.head.linear(hidden))
        torch.testing.assert_close(model.features(**batch), hidden)


def test_templates_each_family_accepts():
    from kernelft.text.templates import check_template

    check_template("{sentence} It was", causal=True)
    check_template("{sentence} It was {mask} .", causal=True)
    with pytest.raises(ValueError, match="masked LM's prompt head reads the mask"):
        check_template("{sentence} It was", causal=False)
    with pytest.raises(ValueError, match="after every sentence slot"):
        check_template("{mask}: {sentence}", causal=True)


def test_the_workflow_checks_templates_against_a_local_model(tiny_checkpoint, tiny_bert_dir):
    from kernelft.core.config import ConfigError
    from kernelft.text.checkpoints import Family, check_templates, local_family

    assert local_family(tiny_checkpoint("gpt2")) is Family.CAUSAL
    assert local_family(tiny_checkpoint("roberta")) is Family.MASKED
    assert local_family(tiny_bert_dir) is Family.ENCODER
    assert local_family("no-such-org/model") is None
    task = {"labels": ["a", "b"], "label_words": ["terrible", "great"], "template": "{sentence} It was"}
    check_templates({"model": {"name": tiny_checkpoint("gpt2")}, "tasks": {"t": task}})
    check_templates({"model": {"name": "no-such-org/model"}, "tasks": {"t": task}})  # a hub id: checked at load
    with pytest.raises(ConfigError, match=r"tasks\.t\.template .* \(encoder LM\)"):
        check_templates({"model": {"name": tiny_bert_dir}, "tasks": {"t": task}})
    # A stage's own model is checked against that stage's tasks only: TREC's "{mask}: {sentence}" suits the
    # encoder of the Malladi stage, not a decoder, which the early-stopping stage does not give it.
    trec = {**task, "template": "{mask}: {sentence}"}
    mlm = {"name": tiny_checkpoint("roberta")}
    config = {"model": mlm, "tasks": {"t": {**task, "template": "{sentence} It was {mask} ."}, "trec": trec},
              "earlystop": {"model": {"name": tiny_checkpoint("gpt2")}, "tasks": ["t"]}}
    check_templates(config)
    with pytest.raises(ConfigError, match=r"tasks\.trec\.template with earlystop\.model\.name=.*\(causal LM\)"):
        check_templates({**config, "earlystop": {**config["earlystop"], "tasks": ["t", "trec"]}})
