"""A scoring runtime hosted in a dedicated child process.

An asyncio server (the stream worker) keeps the GIL for its own work (faust, cleaning,
serialization) while tokenization, TF-IDF, the lexicon and onnxruntime run in parallel
in the child. ``score`` blocks only the calling thread, so callers run it in a thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptopulse.core.settings import Settings

_CHILD_RUNTIME: Any = None
_CHILD_ERROR: str | None = None


def _exit_with_parent(parent: int) -> None:
    """Exit when the parent dies (even by SIGKILL): an orphaned child would keep its model in RAM."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _child_init(uri: str, settings_json: str, threads: int | None) -> None:
    """Pool initializer: load the model once in the child process.

    A failure is kept and re-raised by :func:`_child_version`, so the parent reports the
    real cause instead of a bare "process pool terminated abruptly".
    """
    global _CHILD_RUNTIME, _CHILD_ERROR

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        from cryptopulse.core.settings import Settings
        from scoring.runtime import SentimentRuntime

        settings = Settings.model_validate_json(settings_json)
        _CHILD_RUNTIME = SentimentRuntime.load(uri, settings, threads=threads)
    except Exception as exc:
        _CHILD_ERROR = f"{type(exc).__name__}: {exc}"


def _child_version() -> str:
    if _CHILD_RUNTIME is None:
        raise RuntimeError(_CHILD_ERROR or "model not loaded")
    return str(_CHILD_RUNTIME.model_version)


def _child_reference() -> dict[str, Any] | None:
    reference = getattr(_CHILD_RUNTIME, "reference", None)
    return None if reference is None else dict(reference.to_dict())


def _child_score(texts: list[str]) -> list[Any]:
    return list(_CHILD_RUNTIME.score(texts))


class ChildProcessRuntime:
    """Scores like :class:`scoring.runtime.SentimentRuntime`, with the model in a child process.

    Exposes what servers read from a runtime: ``model_version``, ``reference`` (the
    prediction-drift baseline) and ``score``; ``close`` stops the child.
    """

    def __init__(self, uri: str, settings: Settings, *, threads: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(uri, settings.model_dump_json(), threads),
        )
        try:
            self.model_version: str = self._pool.submit(_child_version).result()
            raw_reference = self._pool.submit(_child_reference).result()
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        from scoring.drift import ReferenceDistribution

        self.reference = ReferenceDistribution.from_dict(raw_reference) if raw_reference else None

    def score(self, texts: Sequence[object]) -> list[Any]:
        return self._pool.submit(_child_score, [str(t) for t in texts]).result()

    def close(self) -> None:
        """Wait for an in-flight batch, then stop the child."""
        self._pool.shutdown(wait=True)
