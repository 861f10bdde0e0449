"""Labelled data: loaders, one label map per dataset, de-duplication and splits.

Each public set labels sentiment its own way (-1/0/1, bearish/bullish/neutral, text labels),
so every map to negative/neutral/positive lives here, in code, next to its loader. Splits
are 70/15/15 per dataset: chronological where the data has dates (CryptoLin), so the test
split is "the future", stratified by label otherwise. Duplicates are removed across all
sets before splitting so no test text is ever seen in training.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from schemas.events import Feedback
from scoring.labels import LABEL_TO_ID

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SPLITS = ("train", "validation", "test")

# Raw label -> canonical label name, one map per dataset.
LABEL_MAPS: dict[str, dict[object, str]] = {
    "cryptolin": {-1: "negative", 0: "neutral", 1: "positive"},
    "twitter_financial_news": {0: "negative", 1: "positive", 2: "neutral"},  # 0 bearish, 1 bullish
    "financial_phrasebank": {"negative": "negative", "neutral": "neutral", "positive": "positive"},
    "tweeteval": {0: "negative", 1: "neutral", 2: "positive"},
    "stock_tweets": {"Negative": "negative", "Positive": "positive"},
}
DATASETS: tuple[str, ...] = tuple(LABEL_MAPS)


class DataError(RuntimeError):
    """A dataset file is missing or carries a label its map does not know."""


def map_label(dataset: str, raw: object) -> str:
    """Canonical label for ``raw`` in ``dataset``; raises on anything unmapped (never guesses)."""
    mapping = LABEL_MAPS[dataset]
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw.strip())
    elif isinstance(raw, np.integer | float) and float(raw).is_integer():
        raw = int(raw)
    elif isinstance(raw, str):
        raw = raw.strip()
    try:
        return mapping[raw]
    except KeyError:
        raise DataError(f"{dataset}: unknown label {raw!r}; known {sorted(map(str, mapping))}") from None


def _frame(
    dataset: str, texts: Sequence[object], raw_labels: Sequence[object], dates: Sequence[object] | None = None
) -> pd.DataFrame:
    labels = [map_label(dataset, r) for r in raw_labels]
    df = pd.DataFrame(
        {
            "text": [str(t) for t in texts],
            "label": [LABEL_TO_ID[lab] for lab in labels],
            "dataset": dataset,
            "date": pd.to_datetime(pd.Series(list(dates))) if dates is not None else pd.NaT,
        }
    )
    return df


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"missing data file {path}; see data/README.md")
    return path


def load_cryptolin(root: Path) -> pd.DataFrame:
    raw = pd.read_csv(_need(root / "cryptolin" / "early.csv"))
    return _frame("cryptolin", raw["text"], raw["label"], raw["date"])


def load_twitter_financial_news(root: Path) -> pd.DataFrame:
    parts = [pd.read_csv(_need(root / "twitter_financial_news" / f)) for f in ("train.csv", "valid.csv")]
    raw = pd.concat(parts, ignore_index=True)
    return _frame("twitter_financial_news", raw["text"], raw["label"])


def load_financial_phrasebank(root: Path, agreement: str = "50Agree") -> pd.DataFrame:
    path = _need(root / "financial_phrasebank" / f"Sentences_{agreement}.txt")
    texts, labels = [], []
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        text, _, label = line.rpartition("@")
        texts.append(text.strip())
        labels.append(label.strip())
    return _frame("financial_phrasebank", texts, labels)


def load_tweeteval(root: Path) -> pd.DataFrame:
    base = root / "tweeteval_sentiment"
    texts: list[str] = []
    labels: list[str] = []
    for part in ("val", "test"):
        t = _need(base / f"{part}_text.txt").read_text("utf-8").splitlines()
        y = _need(base / f"{part}_labels.txt").read_text("utf-8").splitlines()
        if len(t) != len(y):
            raise DataError(f"tweeteval {part}: {len(t)} texts but {len(y)} labels")
        texts += t
        labels += y
    return _frame("tweeteval", texts, labels)


def load_stock_tweets(root: Path) -> pd.DataFrame:
    raw = pd.read_csv(_need(root / "stock_tweets" / "sentiment.csv"))
    return _frame("stock_tweets", raw["Tweet Text"], raw["Sentiment"])


LOADERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "cryptolin": load_cryptolin,
    "twitter_financial_news": load_twitter_financial_news,
    "financial_phrasebank": load_financial_phrasebank,
    "tweeteval": load_tweeteval,
    "stock_tweets": load_stock_tweets,
}


_URL_RE = re.compile(r"https?://\S+")


def normalise_for_dedup(text: str) -> str:
    """Key under which two texts count as the same: case, URLs and spacing ignored."""
    return " ".join(_URL_RE.sub("", text).lower().split())


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """Drop repeated texts across all sets; a text seen with conflicting labels is dropped entirely."""
    key = df["text"].map(normalise_for_dedup)
    df = df.assign(_key=key)
    df = df[df["_key"].str.len() > 0]
    n_labels = df.groupby("_key")["label"].transform("nunique")
    conflicted = int((n_labels > 1).sum())
    out = df[n_labels == 1].drop_duplicates("_key", keep="first").drop(columns="_key")
    log.info("dedup: %d rows -> %d (%d with conflicting labels dropped)", len(df), len(out), conflicted)
    return out.reset_index(drop=True)


def split(
    df: pd.DataFrame, seed: int, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
) -> pd.DataFrame:
    """Add a ``split`` column per dataset: by date where dated, stratified by label otherwise."""
    parts = []
    for _name, part in df.groupby("dataset", sort=True):
        part = part.copy()
        n = len(part)
        n_train = round(n * fractions[0])
        n_val = round(n * fractions[1])
        if part["date"].notna().all():
            order = part.sort_values(["date", "text"], kind="stable").index
            labels = np.array(["train"] * n_train + ["validation"] * n_val + ["test"] * (n - n_train - n_val))
            part.loc[order, "split"] = labels
        else:
            strat = part["label"] if part["label"].value_counts().min() >= 3 else None
            train_idx, rest_idx = train_test_split(
                part.index, train_size=n_train, random_state=seed, stratify=strat
            )
            rest = part.loc[rest_idx]
            strat_rest = (
                rest["label"] if strat is not None and rest["label"].value_counts().min() >= 2 else None
            )
            val_idx, test_idx = train_test_split(
                rest.index, train_size=n_val, random_state=seed, stratify=strat_rest
            )
            part.loc[train_idx, "split"] = "train"
            part.loc[val_idx, "split"] = "validation"
            part.loc[test_idx, "split"] = "test"
        parts.append(part)
    return pd.concat(parts).sort_index()


def load_corpus(
    data_dir: Path | None = None, datasets: Sequence[str] | None = None, seed: int = 13
) -> pd.DataFrame:
    """All requested sets, de-duplicated and split; columns text, label, dataset, date, split."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    names = list(datasets) if datasets is not None else list(DATASETS)
    unknown = sorted(set(names) - set(LOADERS))
    if unknown:
        raise DataError(f"unknown datasets {unknown}; known {sorted(LOADERS)}")
    frames = [LOADERS[name](root) for name in names]
    for name, frame in zip(names, frames, strict=True):
        log.info("loaded %s: %d rows", name, len(frame))
    corpus = split(deduplicate(pd.concat(frames, ignore_index=True)), seed=seed)
    return corpus


def limit_rows(corpus: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` seeded-random rows per dataset and split (tiny runs); all rows for None."""
    if limit is None:
        return corpus
    keep: list[int] = []
    for _, group in corpus.groupby(["dataset", "split"], sort=True):
        keep.extend(int(i) for i in group.sample(n=min(len(group), limit), random_state=seed).index)
    return corpus.loc[sorted(keep)]


def evaluation_fingerprint(test: pd.DataFrame) -> str:
    """Hash of the evaluation split, so promotion only compares models scored on the same texts."""
    import hashlib

    digest = hashlib.sha256()
    for text, label in sorted(zip(test["text"], test["label"], strict=True)):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:16]


FEEDBACK_DATASET = "feedback"
"""The ``dataset`` name of human feedback rows (never one of the public sets)."""


def feedback_frame(examples: Sequence[Feedback], weight: float) -> pd.DataFrame:
    """Feedback as training rows (columns of the corpus plus ``weight``), split ``train``."""
    return pd.DataFrame(
        {
            "text": [f.text for f in examples],
            "label": [LABEL_TO_ID[f.label.value] for f in examples],
            "dataset": FEEDBACK_DATASET,
            "date": pd.NaT,
            "split": "train",
            "weight": float(weight),
        }
    )


def join_feedback(corpus: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """The corpus with feedback rows added to its training split, each with its ``weight``
    (corpus rows weigh 1).

    Feedback never reaches the fixed validation and test splits: a feedback text that is
    also a validation or test text is dropped, so scores stay comparable across runs. A
    training text that a person labelled is replaced by the person's label.
    """
    out = corpus.assign(weight=1.0) if "weight" not in corpus else corpus
    if feedback.empty:
        return out
    key = out["text"].map(normalise_for_dedup)
    held_out = set(key[out["split"] != "train"])
    fb_key = feedback["text"].map(normalise_for_dedup)
    keep = ~fb_key.isin(held_out) & (fb_key.str.len() > 0)
    dropped_held_out = int((~keep).sum())
    feedback, fb_key = feedback[keep], fb_key[keep]
    relabelled = (out["split"] == "train") & key.isin(set(fb_key))
    log.info(
        "feedback: %d rows join training (%d dropped as validation/test texts, %d corpus rows relabelled)",
        len(feedback),
        dropped_held_out,
        int(relabelled.sum()),
    )
    return pd.concat([out[~relabelled], feedback], ignore_index=True)
