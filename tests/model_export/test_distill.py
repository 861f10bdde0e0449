"""Distillation: the loss, the teacher-probability cache, and a tiny student built end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_export.distill import (
    DISTILL_MIX,
    DistillConfig,
    TeacherNotFoundError,
    cached_teacher_probabilities,
    distill_student,
    find_teacher,
)
from model_export.teacher import sha256_file
from model_export.train import TrainResult, train
from model_export.transformer import DISTILLATION_RECORD, UNLABELED, distillation_loss
from tests.model_export.tiny import tiny_config

torch = pytest.importorskip("torch")


def test_loss_is_cross_entropy_without_a_teacher_and_kl_on_unlabelled_texts() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    hard = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, hard)
    assert torch.isclose(distillation_loss(logits, hard, None, 0.5), ce)

    soft = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), soft, reduction="batchmean")
    mixed = distillation_loss(logits, hard, soft, 0.25)
    assert torch.isclose(mixed, 0.25 * ce + 0.75 * kl)
    # Texts only the teacher labelled: the KL term alone.
    unlabelled = torch.tensor([UNLABELED, UNLABELED])
    assert torch.isclose(distillation_loss(logits, unlabelled, soft, 0.9), kl)


def test_temperature_softens_both_sides_and_scales_the_kl_by_its_square() -> None:
    """T = 2: KL(softmax(log q / 2) || softmax(z / 2)) x 4, the labelled part unchanged."""
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    hard = torch.tensor([0, 1])
    soft = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    ce = torch.nn.functional.cross_entropy(logits, hard)
    teacher = soft.sqrt() / soft.sqrt().sum(-1, keepdim=True)  # q^(1/2), renormalised
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / 2, -1), teacher, reduction="batchmean")
    softened = distillation_loss(logits, hard, soft, 0.25, temperature=2.0)
    assert torch.isclose(softened, 0.25 * ce + 0.75 * 4 * kl)
    # a student that already matches the teacher has nothing to learn at any temperature
    matched = torch.log(soft)
    assert distillation_loss(matched, torch.full((2,), UNLABELED), soft, 0.5, temperature=3.0) < 1e-6
    assert not torch.isclose(softened, distillation_loss(logits, hard, soft, 0.25))


def test_student_moves_towards_the_teacher() -> None:
    """One gradient step on the KL term lowers it: the loss points the right way."""
    logits = torch.zeros((4, 3), requires_grad=True)
    soft = torch.tensor([[0.8, 0.1, 0.1]] * 4)
    unlabelled = torch.full((4,), UNLABELED)
    loss = distillation_loss(logits, unlabelled, soft, 0.5)
    loss.backward()
    assert logits.grad is not None
    stepped = (logits - 1.0 * logits.grad).detach()
    assert distillation_loss(stepped, unlabelled, soft, 0.5) < loss


def test_find_teacher_wants_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(TeacherNotFoundError, match="--profile teacher"):
        find_teacher(tmp_path)
    work = tmp_path / "training" / "teacher-abc"
    (work / "checkpoints").mkdir(parents=True)  # still training: no card yet
    with pytest.raises(TeacherNotFoundError):
        find_teacher(tmp_path)
    weights = work / "final" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    (work / "teacher.json").write_text(json.dumps({"weights": {"path": str(weights)}}))
    assert find_teacher(tmp_path) == weights.parent


def test_each_distinct_text_is_labelled_once_per_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_export.distill as distill

    labelled: list[list[str]] = []

    def fake_teacher(teacher_dir: Path, texts: list[str], *args: object) -> np.ndarray:
        labelled.append(list(texts))
        return np.array([[len(t) / 100, 0.0, 1 - len(t) / 100] for t in texts])

    monkeypatch.setattr(distill, "teacher_probabilities", fake_teacher)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"weights")
    first = cached_teacher_probabilities(teacher, ["a", "bb", "a"], 32, tmp_path, progress=False)
    assert labelled == [["a", "bb"]]  # the repeated text once
    np.testing.assert_allclose(first[:, 0], [0.01, 0.02, 0.01])
    both = cached_teacher_probabilities(teacher, ["bb", "ccc", "a"], 32, tmp_path, progress=False)
    assert labelled[-1] == ["ccc"]  # only what the cache lacks
    np.testing.assert_allclose(both[:, 0], [0.02, 0.03, 0.01])
    cached_teacher_probabilities(teacher, ["ccc"], 32, tmp_path, progress=False)
    assert len(labelled) == 2
    (teacher / "model.safetensors").write_bytes(b"other weights")  # another teacher: labelled afresh
    cached_teacher_probabilities(teacher, ["ccc"], 32, tmp_path, progress=False)
    assert labelled[-1] == ["ccc"] and len(labelled) == 3


@pytest.mark.slow
def test_tiny_student_distilled_from_a_teacher_builds_a_verified_ensemble(
    tiny: TrainResult, tmp_path: Path
) -> None:
    """The tiny model's fine-tuned MiniLM stands in for the teacher (same HF layout)."""
    teacher_dir = tiny.artifact_dir.parent / "hf"
    assert (teacher_dir / "model.safetensors").exists()
    texts = ["bitcoin rallies to a record high", "ethereum fees crash the network", "markets flat"]
    first = cached_teacher_probabilities(teacher_dir, texts, 32, tmp_path, progress=False)
    assert first.shape == (3, 3)
    np.testing.assert_allclose(first.sum(axis=1), 1.0, atol=1e-5)
    [cached] = list((tmp_path / "training" / "distill").glob("soft-*.npz"))
    cached_mtime = cached.stat().st_mtime_ns
    again = cached_teacher_probabilities(teacher_dir, texts, 32, tmp_path, progress=False)
    np.testing.assert_array_equal(first, again)
    assert cached.stat().st_mtime_ns == cached_mtime  # served from the cache, not recomputed

    config = tiny_config(tmp_path / "run", max_steps=2)
    taught = DistillConfig(teacher_dir=teacher_dir, alpha=0.3, temperature=2.0)
    student = distill_student(config, taught, tmp_path, progress=False)
    assert (student / "model.safetensors").exists()
    result = train(tiny_config(tmp_path / "run", transformer_dir=student), progress=False)
    assert (result.artifact_dir / "model.onnx").exists()
    # the artifact says how its transformer was taught
    record = json.loads((result.artifact_dir / "metadata.json").read_text("utf-8"))["distillation"]
    assert record["alpha"] == 0.3 and record["temperature"] == 2.0 and record["splits"] == ["train"]
    assert record["teacher_weights_sha256"] == sha256_file(teacher_dir / "model.safetensors")
    assert record["transfer_rows"] > 0 and set(record["mix"]) == {name for name, *_ in taught.mix}
    assert 0.0 <= result.metrics["test_weighted_f1"] <= 1.0


def test_an_unreadable_cache_is_labelled_afresh_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_export.distill as distill

    monkeypatch.setattr(
        distill, "teacher_probabilities", lambda _d, texts, *a: np.full((len(texts), 3), 1 / 3)
    )
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"weights")
    cached_teacher_probabilities(teacher, ["a"], 32, tmp_path, progress=False)
    [cache] = list((tmp_path / "training" / "distill").glob("soft-*.npz"))
    cache.write_bytes(b"not a zip")  # a crash or a full disk left garbage behind
    again = cached_teacher_probabilities(teacher, ["a", "b"], 32, tmp_path, progress=False)
    assert again.shape == (2, 3)
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name]  # no temporary file left
    with np.load(cache, allow_pickle=False) as data:
        assert len(data["keys"]) == 2


def test_a_student_never_learns_from_the_test_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train and validation splits only"):
        distill_student(
            tiny_config(tmp_path / "run"),
            DistillConfig(teacher_dir=tmp_path),
            tmp_path,
            progress=False,
            splits=("train", "test"),
        )


def test_with_mix_changes_only_the_named_datasets(tmp_path: Path) -> None:
    """``--distill-mix``: REPEATS alone keeps the cap, ``:all`` lifts it, 0 leaves a set out,
    and a mix that leaves nothing is refused."""
    assert DistillConfig(teacher_dir=tmp_path).with_mix([]).mix_dict() == DISTILL_MIX
    # caps of their own (the shipped mix has none left), so keeping and lifting one shows
    capped = (
        ("tweeteval", 5000, 1),
        ("twitter_financial_news", 5000, 1),
        ("cryptolin", None, 3),
        ("stock_tweets", None, 1),
    )
    config = DistillConfig(teacher_dir=tmp_path, mix=capped)
    changed = config.with_mix(["tweeteval=2", "twitter_financial_news=1:all", "stock_tweets=0"])
    assert changed.mix_dict() == {
        "tweeteval": (5000, 2),
        "twitter_financial_news": (None, 1),
        "cryptolin": (None, 3),
        "stock_tweets": (None, 0),
    }
    assert config.mix_dict() == {name: (cap, repeats) for name, cap, repeats in capped}  # left as it was
    with pytest.raises(ValueError, match="leaves no dataset"):
        config.with_mix([f"{name}=0" for name, *_ in capped])


def test_the_transfer_set_has_its_own_cap_not_the_trainers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain fine-tuning stops at ``max_examples``; the transfer set at ``DistillConfig.max_rows``,
    so a distilled student sees every text the mix draws (30k rows in the shipped mix)."""
    import model_export.distill as distill

    seen: dict[str, int] = {}

    def fake_fine_tune(texts: list[str], labels: list[int], out: Path, *_a: object, **kw: object) -> Path:
        seen["texts"] = len(texts)
        seen["soft"] = len(kw["soft_targets"])  # type: ignore[arg-type]
        out.mkdir(parents=True, exist_ok=True)
        return out

    monkeypatch.setattr(distill, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(distill, "sha256_file", lambda _p: "0" * 64)
    monkeypatch.setattr(
        distill, "cached_teacher_probabilities", lambda _d, texts, *a, **k: np.full((len(texts), 3), 1 / 3)
    )
    config = tiny_config(tmp_path / "run", max_examples=20)  # 30 rows per dataset and split
    drawn = sum(repeats for _, _, repeats in DistillConfig(teacher_dir=tmp_path).mix) * 30
    student = distill_student(config, DistillConfig(teacher_dir=tmp_path), tmp_path, progress=False)
    record = json.loads((student / DISTILLATION_RECORD).read_text("utf-8"))
    assert seen["texts"] == seen["soft"] == record["transfer_rows"]
    assert 20 < seen["texts"] <= drawn  # every drawn row (less duplicates), not the trainer's 20
    assert record["max_rows"] == distill.DISTILL_MAX_ROWS
    distill_student(config, DistillConfig(teacher_dir=tmp_path, max_rows=25), tmp_path, progress=False)
    assert seen["texts"] == 25
