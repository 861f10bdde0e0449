"""The bundled default model: a fresh machine serves a real model without a 25-minute training run.

``models/default/artifact`` holds one trained ensemble as data only (int8 ONNX, tokenizer and
member weights as JSON and numpy, no pickle) with its sha256 manifest, at most
:data:`MAX_BUNDLE_BYTES`; ``models/default/bundle.json`` says how it was made. On a fresh
registry ``cryptopulse up`` (through ``ensure_default_model``) registers this artifact as the
first champion instead of training, after verifying every file against the manifest.

``cryptopulse model bundle`` reproduces it from the shipped data (the teacher when none has
finished, the distilled student, member choice, the release refit on train + validation; then
check and copy); ``--from-artifact`` bundles an artifact trained elsewhere.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from scoring.manifest import MANIFEST_NAME, file_sha256, runs_code_when_loaded, verify_manifest
from scoring.runtime import MODEL_FILES

if TYPE_CHECKING:
    from core.settings import Settings
    from model_export.registry import RegisteredModel

log = structlog.get_logger(__name__)

BUNDLE_ROOT = Path(__file__).resolve().parents[1] / "models" / "default"
MAX_BUNDLE_BYTES = 40 * 1024 * 1024
DATA_SUFFIXES = frozenset({".onnx", ".json", ".npz", ".safetensors"})
"""What a bundle may hold: formats whose loaders parse data and never run code."""


class BundleError(ValueError):
    """The artifact cannot be bundled (too large, a format that runs code, fails its manifest)."""


@dataclass(frozen=True)
class Bundle:
    root: Path

    @property
    def artifact(self) -> Path:
        return self.root / "artifact"

    @property
    def provenance_path(self) -> Path:
        return self.root / "bundle.json"

    def provenance(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.provenance_path.read_text("utf-8"))
        return data

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.artifact / "metadata.json").read_text("utf-8"))
        return data


def check_artifact(artifact: Path) -> int:
    """Total bytes of a bundle-worthy artifact; :class:`BundleError` saying why it is not one."""
    try:
        verify_manifest(artifact, MODEL_FILES)
    except Exception as exc:  # ModelLoadError: missing, tampered, unlisted code
        raise BundleError(str(exc)) from exc
    total = 0
    for path in sorted(p for p in artifact.rglob("*") if p.is_file()):
        if path.name != MANIFEST_NAME and (
            path.suffix.lower() not in DATA_SUFFIXES or runs_code_when_loaded(path)
        ):
            raise BundleError(
                f"{path.name}: only {', '.join(sorted(DATA_SUFFIXES))} data files may be bundled"
            )
        total += path.stat().st_size
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(f"{artifact} holds {total / 2**20:.1f} MiB; a bundle may hold at most 40 MiB")
    return total


def write_bundle(
    artifact: Path, root: Path = BUNDLE_ROOT, command: str = "cryptopulse model bundle"
) -> Bundle:
    """Check ``artifact`` and copy it to ``root``/artifact atomically, with its provenance beside it."""
    size = check_artifact(artifact)
    metadata = json.loads((artifact / "metadata.json").read_text("utf-8"))
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=root.parent))
    staging.chmod(0o755)  # a checked-in folder, readable like the rest of the checkout
    try:
        shutil.copytree(artifact, staging / "artifact")
        provenance = {
            "command": command,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "bytes": size,
            "manifest_sha256": file_sha256(artifact / MANIFEST_NAME),
            "evaluation_fingerprint": metadata.get("evaluation_fingerprint"),
            "config": metadata.get("config", {}),
            "metrics": {
                k: v
                for k, v in metadata.get("metrics", {}).items()
                if k.endswith(("weighted_f1", "accuracy", "macro_f1")) or k.startswith("latency")
            },
        }
        (staging / "bundle.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n", "utf-8")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("bundled the default model", root=str(root), mib=round(size / 2**20, 1))
    return Bundle(root)


def bundled_default(root: Path = BUNDLE_ROOT) -> Bundle | None:
    """The bundled model when present and intact; None (with a warning when broken) otherwise."""
    bundle = Bundle(root)
    if not (bundle.artifact / MANIFEST_NAME).exists():
        return None
    try:
        check_artifact(bundle.artifact)
    except BundleError as exc:
        log.warning("bundled default model ignored", error=str(exc))
        return None
    return bundle


def register_bundle(settings: Settings, bundle: Bundle) -> RegisteredModel:
    """Log the bundled artifact as an MLflow run and register it (the first one becomes champion)."""
    import mlflow

    from model_export.registry import log_and_register
    from model_export.train import TrainConfig, TrainResult

    metadata = bundle.metadata()
    from scoring.registry_uri import use_mlflow_account

    use_mlflow_account(settings)  # the production registry answers 401 without one
    mlflow.set_tracking_uri(settings.mlflow.uri)
    mlflow.set_registry_uri(settings.mlflow.uri)
    mlflow.set_experiment(settings.mlflow.experiment)
    with mlflow.start_run(run_name="bundled-default") as run:
        mlflow.set_tags(
            {
                "component": "sentiment-ensemble",
                "source": "bundled",
                "bundle_command": "cryptopulse model bundle",
            }
        )
        mlflow.log_dict(bundle.provenance(), "bundle.json")
        result = TrainResult(
            artifact_dir=bundle.artifact,
            fp32_onnx=bundle.artifact / "model.onnx",
            metrics={k: float(v) for k, v in metadata.get("metrics", {}).items()},
            report={"evaluation_fingerprint": metadata.get("evaluation_fingerprint", "")},
            images=[],
        )
        return log_and_register(
            result, TrainConfig.from_settings(settings, bundle.root), settings, run.info.run_id
        )
