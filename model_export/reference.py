"""Input-drift references of registered versions: computed on the validation split, attached in MLflow.

Every registered version carries the :class:`scoring.drift.InputReference` the stream
worker's drift monitor compares live texts with: the ensemble's verdicts on the validation
split (texts no member was trained on; the test split stays for evaluation only), grouped
by the live source each training dataset stands for (:data:`scoring.drift.DATASET_SOURCES`).
It is a JSON artifact of the version's run (``drift/version-N/input_reference.json``), named
by the model-version tag :data:`scoring.drift.REFERENCE_TAG`; the model artifact itself is
left untouched (its manifest pins every file), so a reference can be attached to versions
registered before references existed: ``cryptopulse model reference VERSION`` or
``cryptopulse model reference --all-missing``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from core.settings import Settings
    from scoring.drift import InputReference
    from scoring.runtime import SentimentRuntime

log = structlog.get_logger(__name__)

# Heavy imports (pandas, scikit-learn, onnxruntime, MLflow) happen inside the functions: the
# root CLI imports this module to register the command, and ``cryptopulse --help`` stays fast.

REFERENCE_FILE = "input_reference.json"
MAX_ROWS_PER_SOURCE = 3000
"""Validation rows scored per source: enough for 20-bin histograms, bounded cost (~30 s on 2 cores)."""


class ReferenceAttachError(RuntimeError):
    """The reference cannot be computed or attached (unknown version, no data, registry away)."""


@dataclass(frozen=True)
class AttachedReference:
    """What :func:`attach_reference` did for one version."""

    version: str
    artifact_path: str
    sources: dict[str, int]  # source -> reference rows; empty when skipped
    skipped: bool = False


def model_vocabulary(artifact_dir: Path) -> frozenset[str]:
    """The words the OOV rate counts as known: unigrams of the linear member's word vectorizer."""
    from scoring.linear import load_linear

    pipeline = load_linear(artifact_dir)
    word = dict(pipeline.named_steps["features"].transformer_list)["word"]
    return frozenset(str(term) for term in word.vocabulary_ if " " not in str(term))


def _param(config: dict[str, Any], key: str, default: Any) -> Any:
    """A training parameter from the artifact's ``metadata.json`` (stored JSON-encoded as text)."""
    raw = config.get(key)
    if raw is None:
        return default
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # plain strings are stored as they are


def validation_frame(
    metadata: dict[str, Any], *, data_dir: Path | None = None, max_rows_per_source: int = MAX_ROWS_PER_SOURCE
) -> pd.DataFrame:
    """The validation split the version was trained with, rebuilt from its stored training config
    (datasets, seed, data directory, row limit), at most ``max_rows_per_source`` rows per source."""
    import pandas as pd

    from model_export import data as datamod
    from scoring.drift import DATASET_SOURCES

    config = dict(metadata.get("config") or {})
    seed = int(_param(config, "seed", 13))
    datasets = _param(config, "datasets", list(datamod.DATASETS))
    stored_dir = _param(config, "data_dir", None)
    root = data_dir or (Path(stored_dir) if stored_dir else None)
    if root is not None and not root.is_dir():
        root = None  # trained on another machine: use this checkout's data/
    corpus = datamod.load_corpus(root, datasets, seed=seed)
    corpus = datamod.limit_rows(corpus, _param(config, "limit_per_split", None), seed)
    val = corpus[corpus["split"] == "validation"].copy()
    if val.empty:
        raise ReferenceAttachError("the validation split is empty")
    val["source"] = [DATASET_SOURCES.get(str(d), str(d)) for d in val["dataset"]]
    parts = [
        group.sample(n=min(len(group), max_rows_per_source), random_state=seed)
        for _, group in val.groupby("source", sort=True)
    ]
    return pd.concat(parts).sort_index()


def compute_reference(
    runtime: SentimentRuntime, frame: pd.DataFrame, *, model_version: str, split: str = "validation"
) -> InputReference:
    """Score ``frame`` (columns text, dataset and source) with ``runtime`` and build its reference."""
    import numpy as np

    from scoring.drift import InputReference, ReferenceRow
    from scoring.labels import LABELS

    texts = [str(t) for t in frame["text"]]
    proba = runtime.ensemble_proba(texts)
    rows = [
        ReferenceRow(
            text=text,
            source=str(source),
            label=LABELS[int(np.argmax(p))],
            confidence=float(np.max(p)),
            coins=tuple(runtime.tag_coins(text)),
            dataset=str(dataset),
        )
        for text, source, dataset, p in zip(texts, frame["source"], frame["dataset"], proba, strict=True)
    ]
    return InputReference.build(
        rows,
        model_vocabulary(runtime.path),
        model_version=model_version,
        split=split,
        created=datetime.now(UTC).isoformat(),
    )


def _client(settings: Settings) -> MlflowClient:
    from scoring.registry_uri import mlflow_client

    return mlflow_client(settings)


def attach_reference(
    settings: Settings,
    version: str,
    *,
    artifact_dir: Path | None = None,
    data_dir: Path | None = None,
    force: bool = False,
) -> AttachedReference:
    """Compute ``version``'s input reference and attach it (run artifact + version tag).

    A version that already has one is left alone unless ``force``. ``artifact_dir`` skips the
    download (at registration the artifact is still on disk).
    """
    from mlflow.exceptions import MlflowException

    from model_export.data import DataError
    from scoring.drift import REFERENCE_TAG
    from scoring.registry_uri import local_model_dir
    from scoring.runtime import SentimentRuntime

    client = _client(settings)
    name = settings.mlflow.registered_model
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ReferenceAttachError(f"{name} has no version {version}: {exc}") from exc
    existing = (mv.tags or {}).get(REFERENCE_TAG)
    if existing and not force:
        return AttachedReference(str(version), existing, {}, skipped=True)
    if not mv.run_id:
        raise ReferenceAttachError(f"{name} version {version} has no run to attach the reference to")
    label = f"{name}/{mv.version}"
    path = artifact_dir or local_model_dir(f"models:/{label}", settings)[0]
    runtime = SentimentRuntime(path, model_version=label, threads=settings.model.intra_op_threads)
    try:
        frame = validation_frame(runtime.metadata, data_dir=data_dir)
    except DataError as exc:
        raise ReferenceAttachError(
            f"cannot rebuild the validation split of version {version}: {exc}"
        ) from exc
    reference = compute_reference(runtime, frame, model_version=label)
    if not reference.sources:
        raise ReferenceAttachError(f"version {version}: no source has enough validation rows for a reference")
    folder = f"drift/version-{mv.version}"
    with tempfile.TemporaryDirectory(prefix="cryptopulse-reference-") as tmp:
        file = Path(tmp) / REFERENCE_FILE
        file.write_text(json.dumps(reference.to_dict()), "utf-8")
        client.log_artifact(mv.run_id, str(file), artifact_path=folder)
    artifact_path = f"{folder}/{REFERENCE_FILE}"
    client.set_model_version_tag(name, str(mv.version), REFERENCE_TAG, artifact_path)
    sources = {s: ref.n for s, ref in reference.sources.items()}
    log.info("attached input reference", model=name, version=str(mv.version), sources=sources)
    return AttachedReference(str(mv.version), artifact_path, sources)


def attach_at_registration(settings: Settings, version: str, artifact_dir: Path) -> AttachedReference | None:
    """The registration hook: attach the new version's reference, never failing the registration
    (a version left without one is listed by ``cryptopulse model reference --all-missing``)."""
    try:
        return attach_reference(settings, version, artifact_dir=artifact_dir)
    except Exception as exc:  # the version is registered either way; the reference can be added later
        log.warning("no input reference attached at registration", version=version, error=str(exc))
        return None


def read_reference(settings: Settings, version: str) -> InputReference | None:
    """The input reference attached to ``version`` (None: it has none)."""
    mv = _client(settings).get_model_version(settings.mlflow.registered_model, str(version))
    return reference_of(settings, mv)


def reference_of(settings: Settings, mv: Any) -> InputReference | None:
    """The input reference a registry version carries (its tag names a run artifact), or None."""
    from mlflow.artifacts import download_artifacts

    from scoring.drift import REFERENCE_TAG, InputReference

    path = (mv.tags or {}).get(REFERENCE_TAG)
    if not path or not mv.run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="cryptopulse-reference-") as tmp:
        local = download_artifacts(
            run_id=mv.run_id, artifact_path=path, dst_path=tmp, tracking_uri=settings.mlflow.uri
        )
        return InputReference.from_dict(json.loads(Path(local).read_text("utf-8")))


def versions_missing_reference(settings: Settings) -> list[str]:
    """Registered versions without an input reference, oldest first."""
    from mlflow.exceptions import MlflowException

    from scoring.drift import REFERENCE_TAG

    client = _client(settings)
    name = settings.mlflow.registered_model
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    missing = [str(mv.version) for mv in versions if REFERENCE_TAG not in (mv.tags or {})]
    return sorted(missing, key=int)


def reference_command(
    version: Annotated[str | None, typer.Argument(help="registered version number")] = None,
    all_missing: Annotated[
        bool, typer.Option("--all-missing", help="every registered version that has no reference yet")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="recompute a reference that exists")] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="labelled data (default: the version's own, else data/)")
    ] = None,
) -> None:
    """Compute the input-drift reference of a version (validation split, per source) and attach it."""
    from rich.console import Console

    from core.cli import fail, load_cli_settings

    if (version is None) == (not all_missing):
        raise fail("give either a VERSION or --all-missing", code=2)
    settings = load_cli_settings()
    console = Console(soft_wrap=True)
    try:
        targets = versions_missing_reference(settings) if all_missing else [str(version)]
    except Exception as exc:  # registry unreachable
        raise fail(f"cannot list versions at {settings.mlflow.uri}: {exc}") from None
    if not targets:
        console.print("every registered version has an input reference")
        return
    failed = 0
    for target in targets:
        try:
            done = attach_reference(settings, target, data_dir=data_dir, force=force)
        except Exception as exc:  # report every version, then exit non-zero
            failed += 1
            console.print(f"version {target}: [red]failed[/red]: {exc}")
            continue
        if done.skipped:
            console.print(f"version {target}: has a reference ({done.artifact_path}); --force recomputes it")
        else:
            rows = ", ".join(f"{s} {n}" for s, n in done.sources.items())
            console.print(f"version {target}: reference attached ({done.artifact_path}; rows: {rows})")
    if failed:
        raise fail(f"{failed} of {len(targets)} versions have no reference")
