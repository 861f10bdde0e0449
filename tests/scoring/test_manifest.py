"""The artifact manifest: written at export, every mismatch refuses the load and names the file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from scoring.manifest import MANIFEST_NAME, runs_code_when_loaded, verify_manifest, write_manifest
from scoring.registry_uri import ModelLoadError

pytestmark = pytest.mark.unit

REQUIRED = ("model.onnx", "metadata.json")


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx-bytes")
    (tmp_path / "metadata.json").write_text('{"model_version": "t"}', "utf-8")
    write_manifest(tmp_path)
    return tmp_path


def test_manifest_lists_every_file_with_size_and_sha256(artifact: Path) -> None:
    manifest = json.loads((artifact / MANIFEST_NAME).read_text("utf-8"))
    assert manifest["format_version"] == 1 and manifest["algorithm"] == "sha256"
    assert set(manifest["files"]) == {"model.onnx", "metadata.json"}
    assert manifest["files"]["model.onnx"]["size"] == len(b"\x08\x07onnx-bytes")
    verify_manifest(artifact, REQUIRED)


def test_a_changed_byte_names_the_file(artifact: Path) -> None:
    (artifact / "metadata.json").write_text('{"model_version": "u"}', "utf-8")  # same size
    with pytest.raises(ModelLoadError, match=r"metadata\.json does not match its sha256"):
        verify_manifest(artifact, REQUIRED)


def test_a_truncated_file_names_the_file(artifact: Path) -> None:
    (artifact / "model.onnx").write_bytes(b"\x08")
    with pytest.raises(ModelLoadError, match=r"model\.onnx has 1 bytes"):
        verify_manifest(artifact, REQUIRED)


def test_a_missing_listed_file_names_the_file(artifact: Path) -> None:
    (artifact / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.onnx is listed in manifest\.json but missing"):
        verify_manifest(artifact, REQUIRED)


def test_a_missing_manifest_refuses(artifact: Path) -> None:
    (artifact / MANIFEST_NAME).unlink()
    with pytest.raises(ModelLoadError, match=r"not a CryptoPulse model artifact: no manifest\.json"):
        verify_manifest(artifact, REQUIRED)


def test_a_required_file_the_manifest_does_not_list_refuses(artifact: Path) -> None:
    (artifact / "tokenizer.json").write_text("{}", "utf-8")
    with pytest.raises(ModelLoadError, match=r"does not list tokenizer\.json"):
        verify_manifest(artifact, (*REQUIRED, "tokenizer.json"))


@pytest.mark.parametrize("name", ["linear.joblib", "model.pkl", "sub/weights.pt", "notes.dat"])
def test_an_extra_pickle_refuses_the_whole_artifact(artifact: Path, name: str) -> None:
    extra = artifact / name
    extra.parent.mkdir(exist_ok=True)
    extra.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=4))
    with pytest.raises(ModelLoadError, match=f"unexpected file {name} is in a format that runs code"):
        verify_manifest(artifact, REQUIRED)


def test_an_extra_data_file_is_ignored(artifact: Path) -> None:
    (artifact / "README.txt").write_text("notes", "utf-8")
    verify_manifest(artifact, REQUIRED)


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        '{"format_version": 2, "algorithm": "sha256", "files": {}}',
        '{"format_version": 1, "algorithm": "md5", "files": {}}',
        '{"format_version": 1, "algorithm": "sha256", "files": {"../metadata.json": {"sha256": "'
        + "0" * 64
        + '", "size": 1}}}',
        '{"format_version": 1, "algorithm": "sha256", "files": {"model.onnx": {"size": 1}}}',
    ],
)
def test_a_malformed_manifest_refuses(artifact: Path, manifest: str) -> None:
    (artifact / MANIFEST_NAME).write_text(manifest, "utf-8")
    with pytest.raises(ModelLoadError, match=r"manifest\.json"):
        verify_manifest(artifact, REQUIRED)


def test_export_refuses_to_list_an_executable_file(artifact: Path) -> None:
    (artifact / "linear.joblib").write_bytes(pickle.dumps([1]))
    with pytest.raises(ValueError, match=r"refusing to list linear\.joblib"):
        write_manifest(artifact)


def test_pickles_are_recognised_by_content(tmp_path: Path) -> None:
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.dat"
        path.write_bytes(pickle.dumps([1], protocol=protocol))
        assert runs_code_when_loaded(path)
    plain = tmp_path / "plain.json"
    plain.write_text("{}", "utf-8")
    assert not runs_code_when_loaded(plain)
