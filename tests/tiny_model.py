"""One tiny but real sentiment model for every test that needs to score text.

A few fine-tuning steps on a few rows per dataset (real ONNX + linear + lexicon
members, poor accuracy, fast), trained once and cached under
``cache_dir/test-models``. The cache is keyed by a fingerprint of the training and
runtime code, so a change there retrains instead of testing a stale artifact. A file
lock lets parallel test processes share one training run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from core.settings import Settings

TINY_VERSION = "tiny-test"
_CODE = [Path(__file__).resolve().parents[1] / pkg for pkg in ("model_export", "scoring")]


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for folder in _CODE:
        for path in sorted(folder.rglob("*")):
            if path.suffix in {".py", ".json"}:
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def tiny_model_dir(settings: Settings) -> Path:
    """Path of a complete artifact directory; trains it on first use (a minute or two).

    ``CRYPTOPULSE_TEST_MODEL_DIR`` points at an existing artifact instead.
    """
    given = os.environ.get("CRYPTOPULSE_TEST_MODEL_DIR")
    if given:
        return Path(given)
    from scoring.runtime import ARTIFACT_FILES

    root = settings.cache_dir / "test-models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"tiny-{_fingerprint()}"
    with (root / ".tiny.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((target / name).exists() for name in ARTIFACT_FILES):
            return target
        from model_export.train import TrainConfig, train

        work = root / "tiny-work"
        config = TrainConfig(
            out_dir=work,
            limit_per_split=40,
            max_steps=4,
            max_examples=200,
            max_length=32,
            batch_size=16,
            threads=2,
            model_version=TINY_VERSION,
            measure_latency=False,
            verify_tolerance=0.2,
        )
        result = train(config, progress=False)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(result.artifact_dir, target)
        shutil.rmtree(work, ignore_errors=True)
        for stale in root.glob("tiny-*"):
            if stale != target and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        return target
