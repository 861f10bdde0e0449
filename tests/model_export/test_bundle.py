"""The bundled default model: only data formats, at most 40 MiB, verified, registered without training."""

from __future__ import annotations

import json
import pickle  # nosec B403 # writes a pickle on purpose, to see it refused
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from model_export import bundle as bundles
from model_export.bundle import BundleError, bundled_default, check_artifact, register_bundle, write_bundle
from scoring.registry_uri import resolve_version
from scoring.runtime import SentimentRuntime
from tests.model_export.test_registry import drop_registered_model, registry_settings


def test_bundle_round_trip_keeps_the_artifact_byte_for_byte(tiny_model_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "models" / "default"
    bundle = write_bundle(tiny_model_dir, root)
    for original in tiny_model_dir.rglob("*"):
        if original.is_file():
            copy = bundle.artifact / original.relative_to(tiny_model_dir)
            assert copy.read_bytes() == original.read_bytes()
    provenance = bundle.provenance()
    assert provenance["command"] == "cryptopulse model bundle"
    assert provenance["bytes"] == check_artifact(bundle.artifact) <= bundles.MAX_BUNDLE_BYTES
    assert "test_weighted_f1" in provenance["metrics"]
    assert bundled_default(root) == bundle
    SentimentRuntime.load(bundle.artifact)  # loads through the manifest check
    # Bundling again replaces the old bundle atomically (no staging directory left behind).
    write_bundle(tiny_model_dir, root)
    assert sorted(p.name for p in root.parent.iterdir()) == ["default"]


def test_code_formats_oversize_and_tampering_are_refused(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = Path(shutil.copytree(tiny_model_dir, tmp_path / "artifact"))
    (artifact / "extra.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(BundleError, match="runs code"):
        check_artifact(artifact)
    (artifact / "extra.pkl").unlink()
    (artifact / "notes.txt").write_text("not listed, not data")
    with pytest.raises(BundleError, match=r"only .* data files"):
        check_artifact(artifact)
    (artifact / "notes.txt").unlink()
    monkeypatch.setattr(bundles, "MAX_BUNDLE_BYTES", 1024)
    with pytest.raises(BundleError, match="at most 40 MiB"):
        check_artifact(artifact)
    monkeypatch.undo()
    root = tmp_path / "bundle"
    bundle = write_bundle(artifact, root)
    with (bundle.artifact / "combiner.json").open("a") as f:
        f.write(" ")
    assert bundled_default(root) is None  # a broken bundle is ignored (and logged), never served
    assert bundled_default(tmp_path / "nothing-here") is None


@pytest.fixture
def registry(isolated_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = registry_settings(isolated_settings, tmp_path / "cache")
    yield settings
    drop_registered_model(settings)


@pytest.mark.integration
def test_registering_the_bundle_makes_a_champion_without_training(
    tiny_model_dir: Path, tmp_path: Path, registry: Settings
) -> None:
    bundle = write_bundle(tiny_model_dir, tmp_path / "default")
    registered = register_bundle(registry, bundle)
    assert "champion" in registered.aliases
    version = resolve_version(f"models:/{registry.mlflow.registered_model}@champion", registry)
    assert version.version == registered.version
    runtime = SentimentRuntime.load(f"models:/{registry.mlflow.registered_model}@champion", registry)
    assert runtime.score(["bitcoin rallies"])[0].label is not None
    metadata = json.loads((bundle.artifact / "metadata.json").read_text())
    expected = metadata["metrics"]["test_weighted_f1"]
    assert registered.metrics.get("eval_weighted_f1") == pytest.approx(expected, abs=1e-6)


def test_bundle_command_checks_and_writes(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_settings: Settings
) -> None:
    from typer.testing import CliRunner

    import model_export.cli as cli
    from cryptopulse.cli.main import app

    monkeypatch.setattr(cli, "_settings", lambda: isolated_settings)
    dest = tmp_path / "bundle"
    bundle = ["model", "bundle", "--dest", str(dest), "--from-artifact"]
    out = CliRunner().invoke(app, [*bundle, str(tiny_model_dir)])
    assert out.exit_code == 0, out.output
    assert "bundled" in out.output and bundled_default(dest) is not None
    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    (broken / "model.onnx").write_bytes(b"not the model")
    out = CliRunner().invoke(app, [*bundle, str(broken)])
    assert out.exit_code == 1 and "tampered" in out.output
    assert bundled_default(dest) is not None  # the good bundle is left in place
