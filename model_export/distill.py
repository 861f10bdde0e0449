"""Distillation: the fast MiniLM student learns from the fine-tuned all-mpnet-base-v2 teacher.

The teacher (``train --profile teacher``) reads crypto text better but is ~8x slower, too
slow to serve on two cores. Distillation keeps the student's speed and moves it towards the
teacher's accuracy in two ways:

* **soft targets**: on texts people labelled, the student learns the teacher's whole
  probability row as well as the hard label (:func:`model_export.transformer.distillation_loss`),
  which carries more signal per example than one class id;
* **a larger transfer set**: the student's plain fine-tuning caps the big generic datasets
  (see ``DEFAULT_MIX``) to keep two epochs inside the time budget; with a teacher the same
  number of steps can be spent on a mix that leans further to finance and crypto text.

The teacher's probabilities are computed once per (teacher weights, distinct text) and cached
as ``.npz`` (no pickle) under ``cache_dir/training/distill``: a second run with the same
teacher skips the slow part. The distilled MiniLM then goes through the unchanged ensemble pipeline
(:func:`model_export.train.train` with ``transformer_dir``): export, int8, verification,
linear member, combiner, evaluation, registration.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model_export.teacher import sha256_file, teacher_probabilities
from model_export.train import TrainConfig, training_corpus, transformer_training_set
from model_export.transformer import DISTILLATION_RECORD, FineTuneConfig, fine_tune

log = logging.getLogger(__name__)

DISTILL_MIX: dict[str, tuple[int | None, int]] = {
    "twitter_financial_news": (None, 1),
    "tweeteval": (None, 1),
    "financial_phrasebank": (None, 2),
    "cryptolin": (None, 3),
    "stock_tweets": (None, 1),
}
"""The transfer set: finance and crypto text repeated as in plain training or more, and every
train tweet, now that the teacher labels them: 30,171 rows from the train split. Each step up
in tweets (4,500, then 10,000 of 18,000 rows, then all) lifted the student on validation; the
model card has the figures."""

DISTILL_MAX_ROWS = 40_000
"""The transfer set's own cap, above what :data:`DISTILL_MIX` draws from train + validation
(about 36,000 rows for the release refit). The trainer's ``max_examples`` (18,000) caps plain
fine-tuning, whose gold-only tweets the 2-epoch budget was sized for; a distilled student
learns more from every extra text the teacher labels."""


class TeacherNotFoundError(FileNotFoundError):
    """No finished teacher: run ``cryptopulse train --profile teacher`` first (it resumes)."""


@dataclass(frozen=True)
class DistillConfig:
    """How the student learns from the teacher (logged to MLflow beside the train config)."""

    teacher_dir: Path
    alpha: float = 0.1  # weight of the hard labels; the rest goes to the teacher's probabilities
    temperature: float = 1.0  # > 1 softens teacher and student alike (distillation_loss)
    mix: tuple[tuple[str, int | None, int], ...] = tuple((k, *v) for k, v in DISTILL_MIX.items())
    max_rows: int = DISTILL_MAX_ROWS  # the transfer set's cap (instead of the trainer's max_examples)
    teacher_batch_size: int = 64

    def mix_dict(self) -> dict[str, tuple[int | None, int]]:
        return {name: (cap, repeats) for name, cap, repeats in self.mix}

    def with_mix(self, specs: Sequence[str]) -> DistillConfig:
        """This config with ``NAME=REPEATS[:CAP]`` changes to its transfer mix (``cryptopulse
        train --distill-mix``): REPEATS copies of the dataset's train rows (0 leaves it out),
        CAP rows drawn first (``all``: every row; left out, the current cap stays). Datasets
        not named keep their share, so an experiment changes one thing. Raises ValueError."""
        mix = self.mix_dict()
        for spec in specs:
            name, sep, value = spec.partition("=")
            name = name.strip()
            if not sep or name not in mix:
                raise ValueError(
                    f"--distill-mix {spec!r}: expected NAME=REPEATS[:CAP], NAME one of {', '.join(mix)}"
                )
            repeats_text, has_cap, cap_text = value.partition(":")
            try:
                repeats = int(repeats_text)
                cap = mix[name][0] if not has_cap else None if cap_text.strip() == "all" else int(cap_text)
            except ValueError:
                raise ValueError(
                    f"--distill-mix {spec!r}: REPEATS and CAP are whole numbers (CAP may be 'all')"
                ) from None
            if repeats < 0 or (cap is not None and cap < 1):
                raise ValueError(f"--distill-mix {spec!r}: REPEATS must be >= 0 and CAP >= 1")
            mix[name] = (cap, repeats)
        if not any(repeats for _, repeats in mix.values()):
            raise ValueError("--distill-mix leaves no dataset in the transfer set")
        return replace(self, mix=tuple((name, cap, repeats) for name, (cap, repeats) in mix.items()))


def find_teacher(cache_dir: Path) -> Path:
    """The newest finished teacher's weights directory under ``cache_dir/training``.

    A teacher is finished when its ``teacher.json`` card exists (written after evaluation);
    a run still training has checkpoints only.
    """
    cards = sorted((cache_dir / "training").glob("teacher-*/teacher.json"), key=lambda p: p.stat().st_mtime)
    for card_path in reversed(cards):
        card = json.loads(card_path.read_text("utf-8"))
        weights = Path(card["weights"]["path"])
        if weights.exists():
            return weights.parent
    raise TeacherNotFoundError(
        f"no finished teacher under {cache_dir / 'training'}; "
        "run `cryptopulse train --profile teacher` (hours on 2 cores; it resumes where it stopped)"
    )


def _read_soft_cache(path: Path) -> dict[str, np.ndarray]:
    """The cached probability rows by text key; empty (and logged) when the file is unreadable."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as cached:
            return dict(zip(cached["keys"].tolist(), np.asarray(cached["proba"]), strict=True))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("teacher probability cache %s is unreadable (%s): labelling afresh", path, exc)
        return {}


def cached_teacher_probabilities(
    teacher_dir: Path,
    texts: list[str],
    max_length: int,
    cache_dir: Path,
    batch_size: int = 64,
    threads: int = 2,
    progress: bool = True,
) -> np.ndarray:
    """The teacher's probabilities for ``texts``; each distinct text is labelled once per teacher.

    The cache is one ``.npz`` per (teacher weights, max length) holding a sha256 key and a
    probability row per text, so the refit's transfer set (train + validation) only pays for
    the texts the first student did not see, and texts repeated in the mix are labelled once.
    """
    teacher_key = hashlib.sha256(
        sha256_file(teacher_dir / "model.safetensors").encode() + str(max_length).encode()
    ).hexdigest()[:16]
    path = cache_dir / "training" / "distill" / f"soft-{teacher_key}.npz"
    keys = [hashlib.sha256(text.encode("utf-8", "replace")).hexdigest() for text in texts]
    known = _read_soft_cache(path)
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    if missing:
        by_key = dict(zip(keys, texts, strict=True))
        t = time.perf_counter()
        proba = teacher_probabilities(
            teacher_dir, [by_key[k] for k in missing], max_length, batch_size, threads, progress
        )
        # another run may have added texts meanwhile: merge its rows before replacing the file
        known = {**_read_soft_cache(path), **known, **dict(zip(missing, proba, strict=True))}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, keys=np.array(list(known)), proba=np.stack(list(known.values())))
        Path(tmp_name).replace(path)  # atomic: readers see the old file or the new one, never half
        log.info(
            "teacher labelled %d new texts in %.0fs; cached at %s",
            len(missing),
            time.perf_counter() - t,
            path,
        )
    else:
        log.info("teacher probabilities for all %d texts from the cache: %s", len(texts), path)
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0, 3))


def distill_student(
    train_config: TrainConfig,
    distill: DistillConfig,
    cache_dir: Path,
    progress: bool = True,
    splits: tuple[str, ...] = ("train",),
) -> Path:
    """Fine-tune MiniLM on the transfer set with the teacher's soft targets; the HF model directory.

    Pass the result as ``transformer_dir`` to :func:`model_export.train.train` (or
    ``train_and_register``) to build, evaluate and register the ensemble around it. ``splits``
    ("train", "validation") gives the student of the release refit (``refit_transformer_dir``);
    the teacher never saw the validation rows, so its probabilities there are held-out ones.
    """
    if "test" in splits or not set(splits) <= {"train", "validation"}:
        raise ValueError(f"a student learns from the train and validation splits only, not {splits}")
    # people's feedback labels join the transfer set as in plain training (repeated by weight)
    corpus = training_corpus(train_config)
    rows = corpus[corpus["split"].isin(splits)].reset_index(drop=True)
    transfer = transformer_training_set(rows, train_config, distill.mix_dict(), max_examples=distill.max_rows)
    texts = transfer["text"].tolist()
    soft = cached_teacher_probabilities(
        distill.teacher_dir,
        texts,
        train_config.max_length,
        cache_dir,
        batch_size=distill.teacher_batch_size,
        threads=train_config.threads,
        progress=progress,
    )
    agreement = float((soft.argmax(1) == transfer["label"].to_numpy()).mean())
    log.info("transfer set: %d texts; teacher agrees with the labels on %.3f", len(texts), agreement)
    ft = FineTuneConfig(
        max_length=train_config.max_length,
        epochs=train_config.epochs,
        batch_size=train_config.batch_size,
        learning_rate=train_config.learning_rate,
        max_steps=train_config.max_steps,
        seed=train_config.seed,
        threads=train_config.threads,
    )
    suffix = "student" if tuple(splits) == ("train",) else "student-" + "-".join(splits)
    out = Path(train_config.out_dir).parent / f"{Path(train_config.out_dir).name}-{suffix}"
    student = fine_tune(
        texts,
        transfer["label"].tolist(),
        out,
        ft,
        progress=progress,
        soft_targets=soft,
        distill_alpha=distill.alpha,
        distill_temperature=distill.temperature,
    )
    # How this student was taught travels with it: the ensemble built around it copies this
    # into the artifact's metadata.json (and so into MLflow and the bundle).
    (student / DISTILLATION_RECORD).write_text(
        json.dumps(
            {
                "teacher": distill.teacher_dir.parent.name,
                "teacher_weights_sha256": sha256_file(distill.teacher_dir / "model.safetensors"),
                "alpha": distill.alpha,
                "temperature": distill.temperature,
                "mix": {name: [cap, repeats] for name, (cap, repeats) in distill.mix_dict().items()},
                "max_rows": distill.max_rows,
                "splits": list(splits),
                "transfer_rows": len(texts),
                "teacher_agreement": round(agreement, 4),
            },
            indent=1,
        ),
        "utf-8",
    )
    return student
