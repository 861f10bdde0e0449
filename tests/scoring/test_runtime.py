from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from model_export.bundle import BUNDLE_ROOT
from model_export.train import TrainResult
from scoring.manifest import MANIFEST_NAME
from scoring.registry_uri import ModelLoadError
from scoring.runtime import SentimentRuntime, TextScore, inference_session

pytestmark = [pytest.mark.unit, pytest.mark.slow]


@pytest.fixture(scope="module")
def runtime(tiny: TrainResult) -> SentimentRuntime:
    return SentimentRuntime(tiny.artifact_dir, model_version="tiny/1", batch_size=4, max_text_chars=200)


def test_scores_are_well_formed(runtime: SentimentRuntime) -> None:
    texts = ["$BTC to the moon 🚀", "Exchange hacked, funds lost", "Shares were flat", "ok"] * 3
    out = runtime.score(texts)
    assert len(out) == len(texts)
    for s in out:
        assert isinstance(s, TextScore)
        assert s.label in {"negative", "neutral", "positive"}
        assert s.p_negative + s.p_neutral + s.p_positive == pytest.approx(1.0, abs=1e-6)  # type: ignore[operator]
        assert s.score == pytest.approx(s.p_positive - s.p_negative)  # type: ignore[operator]
        assert -1.0 <= s.score <= 1.0  # type: ignore[operator]
        assert s.confidence == pytest.approx(max(s.p_negative, s.p_neutral, s.p_positive))  # type: ignore[type-var]
        assert s.model_version == "tiny/1"
        assert s.error is None
    assert out[0].coins == ("bitcoin",)
    with pytest.raises(Exception):  # frozen  # noqa: B017
        out[0].label = "neutral"  # type: ignore[misc]


def test_batching_does_not_change_results(tiny: TrainResult) -> None:
    texts = ["short", "a somewhat longer text about ethereum staking yields", "bitcoin", "FUD", "gm"]
    one = SentimentRuntime(tiny.artifact_dir, batch_size=1).score(texts)
    many = SentimentRuntime(tiny.artifact_dir, batch_size=64).score(texts)
    for a, b in zip(one, many, strict=True):
        assert a.label == b.label
        # int8 dynamic quantization ranges activations per batch: tiny, bounded drift
        assert a.p_positive == pytest.approx(b.p_positive, abs=5e-3)


def test_bad_inputs_get_errors_not_exceptions(runtime: SentimentRuntime) -> None:
    out = runtime.score(["", "   ", None, 42, "x" * 201, "fine text"])
    assert [s.label is None for s in out] == [True, True, True, True, True, False]
    assert out[0].error == "empty text"
    assert "not text" in (out[2].error or "")
    assert "longer than 200" in (out[4].error or "")
    assert runtime.score([]) == []


def test_tag_coins_and_explain(runtime: SentimentRuntime) -> None:
    assert runtime.tag_coins("SOL and $ETH") == ["solana", "ethereum"]
    explanation = runtime.explain("profit rose and the outlook is strong")
    assert all(isinstance(tok, str) and w > 0 for tok, w in explanation)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(ModelLoadError):
        SentimentRuntime.load(tmp_path / "missing")
    with pytest.raises(ModelLoadError):
        SentimentRuntime.load(tmp_path)  # exists but is no artifact


@pytest.fixture
def artifact_copy(tiny: TrainResult, tmp_path: Path) -> Path:
    """A copy of the tiny model's artifact to tamper with."""
    return Path(shutil.copytree(tiny.artifact_dir, tmp_path / "artifact"))


def test_a_copied_artifact_with_an_extra_data_file_loads(artifact_copy: Path) -> None:
    (artifact_copy / "NOTES.txt").write_text("not listed, never read", "utf-8")
    assert SentimentRuntime.load(artifact_copy).score(["bitcoin rallies"])[0].label is not None


@pytest.mark.parametrize(
    "name", ["model.onnx", "linear.npz", "linear.json", "combiner.json", "metadata.json"]
)
def test_a_tampered_file_refuses_the_load(artifact_copy: Path, name: str) -> None:
    data = bytearray((artifact_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size: only the sha256 can tell
    (artifact_copy / name).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=f"{re.escape(name)} does not match its sha256"):
        SentimentRuntime.load(artifact_copy)


def test_a_missing_manifest_refuses_the_load(artifact_copy: Path) -> None:
    (artifact_copy / MANIFEST_NAME).unlink()
    with pytest.raises(ModelLoadError, match=r"no manifest\.json"):
        SentimentRuntime.load(artifact_copy)


def test_an_extra_pickle_refuses_the_load(artifact_copy: Path) -> None:
    (artifact_copy / "linear.joblib").write_bytes(pickle.dumps({"an": "old member"}))
    with pytest.raises(ModelLoadError, match=r"unexpected file linear\.joblib is in a format that runs code"):
        SentimentRuntime.load(artifact_copy)


def test_runtime_never_imports_torch_nor_unpickles(tiny: TrainResult) -> None:
    # Every unpickler (C or Python, also numpy's and joblib's) fires the ``pickle.find_class``
    # audit event for any global a pickle refers to, which is how a pickle runs code.
    code = textwrap.dedent(f"""
        import sys
        unpickled = []
        sys.addaudithook(lambda event, args: unpickled.append(args) if event == "pickle.find_class" else None)
        from scoring.runtime import SentimentRuntime
        rt = SentimentRuntime.load({str(tiny.artifact_dir)!r})
        out = rt.score(["bitcoin to the moon", "", "rekt"])
        rt.explain("bitcoin to the moon")
        assert out[0].label is not None and out[1].error
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {{"torch", "transformers", "optimum"}})
        assert not heavy, heavy
        assert not unpickled, unpickled
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_a_dropped_lexicon_is_not_run_and_changes_nothing(tmp_path: Path) -> None:
    """A combiner that dropped the lexicon (zero weights): serving skips it, same probabilities."""
    import numpy as np

    from scoring.ensemble import FEATURE_NAMES, MEMBER_FEATURES, Combiner, combiner_features
    from scoring.manifest import write_manifest

    artifact = tmp_path / "artifact"
    shutil.copytree(BUNDLE_ROOT / "artifact", artifact)
    fitted = Combiner.load(artifact / "combiner.json")
    coef = fitted.coef.copy()
    coef[:, [FEATURE_NAMES.index(name) for name in MEMBER_FEATURES["lexicon"]]] = 0.0
    Combiner(coef=coef, intercept=fitted.intercept, dropped=("lexicon",)).save(artifact / "combiner.json")
    write_manifest(artifact)
    bundled = SentimentRuntime(artifact)
    assert "lexicon" in bundled._combiner.dropped
    texts = ["Bitcoin ETF approved, $BTC rallies 🚀", "Exchange hacked, withdrawals halted", "ETH flat today"]
    calls: list[int] = []
    original = bundled.lexicon_features

    def counted(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return original(texts)

    bundled.lexicon_features = counted  # type: ignore[method-assign]
    served = bundled.ensemble_proba(texts)
    assert calls == []
    p_t, p_l = bundled.transformer_proba(texts), bundled.linear_proba(texts)
    with_lexicon = bundled._combiner.predict_proba(combiner_features(p_t, p_l, original(texts)))
    assert np.array_equal(served, with_lexicon)


def test_served_graph_leaves_residual_layer_norms_unfused(tmp_path: Path) -> None:
    """ONNX Runtime's fused SkipLayerNormalization has a scalar CPU kernel (13 % slower on
    the bundled MiniLM, docs/benchmarks.md): the serving session must run Add +
    LayerNormalization instead. Without the setting, the same graph does fuse them."""
    import onnx
    import onnxruntime as ort

    model = BUNDLE_ROOT / "artifact" / "model.onnx"
    served = tmp_path / "served.onnx"
    inference_session(model, threads=1, optimized_graph=served)
    ops = {node.op_type for node in onnx.load(str(served)).graph.node}
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    assert "SkipLayerNormalization" in {
        node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node
    }
