"""Durable connector state (cursors, ETags, seen ids) as small JSON files.

Each source owns one file under ``settings.home / "producers"``. Writes are atomic
(temp file + fsync + rename) so a crash leaves either the old or the new state,
never a torn file. Connectors call :meth:`StateStore.save` only after the Kafka
flush of the records the new state covers has succeeded, so a crash can re-produce
items (same ``source_id``, de-duplicated downstream) but never skip them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)


def state_dir(settings: Settings) -> Path:
    return settings.home / "producers"


class StateStore:
    """One JSON document per source, loaded once and saved atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_source(cls, settings: Settings, source: str) -> StateStore:
        return cls(state_dir(settings) / f"{source}.json")

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # A corrupt file cannot come from our atomic writes; keep it for inspection
            # and start over rather than crash-loop (downstream de-dups re-produced items).
            backup = self.path.with_suffix(".corrupt")
            log.error("state unreadable, starting fresh", extra={"path": str(self.path), "error": str(exc)})
            self.path.replace(backup)
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, separators=(",", ":"), sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
