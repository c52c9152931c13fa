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
