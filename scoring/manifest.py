"""The sha256 manifest of a model artifact: written last at export, verified before every load.

A model reaches a worker from an MLflow registry (unauthenticated by default), a download
cache or a directory, and anything on that way can change its files. ``manifest.json``
records each file's size and sha256 when training wrote it; :func:`verify_manifest` checks
every listed file before the runtime parses any of them, so a tampered, truncated or
missing file refuses the load and names the file. Files the manifest does not list are
never read by the runtime; one in a format that runs code when loaded (pickle and its
kin) refuses the load all the same, because some other loader could pick it up.

The manifest guards integrity, not origin: whoever can rewrite a whole artifact can
rewrite its manifest too, which is why no artifact file may be in an executable format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from scoring.registry_uri import ModelLoadError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1

# Formats whose loaders run code: pickle and everything built on it (joblib, dill, torch
# checkpoints), plus code itself.
EXECUTABLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth", ".ckpt", ".bin", ".py", ".pyc", ".so"}
)
_PICKLE_PROTOCOLS = range(2, 6)  # a pickle of protocol 2+ starts with b"\x80" + protocol
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def runs_code_when_loaded(path: Path) -> bool:
    """True for a file whose usual loader executes code: by its suffix or a pickle header."""
    if path.suffix.lower() in EXECUTABLE_SUFFIXES:
        return True
    with path.open("rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS


def _artifact_files(directory: Path) -> dict[str, Path]:
    """Every regular file under ``directory`` but the manifest, by POSIX path relative to it."""
    return {
        path.relative_to(directory).as_posix(): path
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST_NAME
    }


def write_manifest(directory: Path) -> Path:
    """List every file of the artifact in ``directory`` with its size and sha256.

    Call it after the last file is written: a file written later fails verification.
    Refuses (ValueError) a file in an executable format, so no export can ship one.
    """
    files = _artifact_files(directory)
    executable = [name for name, path in files.items() if runs_code_when_loaded(path)]
    if executable:
        raise ValueError(
            f"{directory}: refusing to list {', '.join(executable)}: a format that runs code when loaded"
        )
    manifest = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "algorithm": "sha256",
        "files": {
            name: {"sha256": file_sha256(path), "size": path.stat().st_size} for name, path in files.items()
        },
    }
    target = directory / MANIFEST_NAME
    target.write_text(json.dumps(manifest, indent=1, sort_keys=True), "utf-8")
    return target


def _listed_files(directory: Path) -> dict[str, dict[str, Any]]:
    """The manifest's file entries, checked for shape; ModelLoadError when it is absent or malformed."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelLoadError(
            f"{directory} is not a CryptoPulse model artifact: no {MANIFEST_NAME} to verify its files "
            "against (an artifact exported before manifests existed must be retrained: `cryptopulse train`)"
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != MANIFEST_FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise ModelLoadError(f"{path}: format_version {found!r}, expected {MANIFEST_FORMAT_VERSION}")
    files = manifest.get("files")
    if manifest.get("algorithm") != "sha256" or not isinstance(files, dict):
        raise ModelLoadError(f"{path}: expected an 'algorithm' of sha256 and a 'files' mapping")
    for name, entry in files.items():
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or "\\" in name or ".." in parts or name == MANIFEST_NAME:
            raise ModelLoadError(f"{path}: entry {name!r} is not a file inside the artifact")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _SHA256.match(entry["sha256"])
            or not isinstance(entry.get("size"), int)
        ):
            raise ModelLoadError(f"{path}: entry {name!r} needs a hex 'sha256' and an integer 'size'")
    return files


def verify_manifest(directory: Path, required: Iterable[str]) -> None:
    """Check the artifact in ``directory`` against its manifest before anything is parsed.

    Raises :class:`ModelLoadError` naming the file when the manifest is missing or does not
    list a ``required`` file, a listed file is missing or differs in size or sha256, or an
    unlisted file is in a format that runs code when loaded. Other unlisted files are
    logged and left alone (the runtime reads only listed ones).
    """
    files = _listed_files(directory)
    uncovered = [name for name in required if name not in files]
    if uncovered:
        raise ModelLoadError(f"{directory}/{MANIFEST_NAME} does not list {', '.join(uncovered)}")
    present = _artifact_files(directory)
    for name, path in present.items():
        if name in files:
            continue
        if runs_code_when_loaded(path):
            raise ModelLoadError(
                f"{directory}: unexpected file {name} is in a format that runs code when loaded; "
                "refusing the whole artifact"
            )
        log.warning(
            "file not in the model manifest, ignored", extra={"directory": str(directory), "file": name}
        )
    for name, entry in files.items():
        found = present.get(name)
        if found is None:
            raise ModelLoadError(f"{directory}: {name} is listed in {MANIFEST_NAME} but missing")
        size = found.stat().st_size
        if size != entry["size"]:
            raise ModelLoadError(
                f"{directory}: {name} has {size} bytes, {MANIFEST_NAME} says {entry['size']} "
                "(tampered or truncated)"
            )
        if file_sha256(found) != entry["sha256"]:
            raise ModelLoadError(
                f"{directory}: {name} does not match its sha256 in {MANIFEST_NAME} (tampered)"
            )
