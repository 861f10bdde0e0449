"""A scoring runtime hosted in a dedicated child process.

An asyncio server (the stream worker) keeps the GIL for its own work (faust, cleaning,
serialization) while tokenization, TF-IDF, the lexicon and onnxruntime run in parallel
in the child. ``score`` blocks only the calling thread, so callers run it in a thread.

A child that dies (OOM killer, a crash in native code, SIGKILL) is rebuilt on the next
batch with the same model version, and the batch is scored again; a runtime is never left
serving from a dead process. A batch that kills the child twice is scored text by text,
so a text that kills it fails alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import structlog

from scoring.registry_uri import MODELS_SCHEME, is_registry_uri

if TYPE_CHECKING:
    from core.settings import Settings

log = structlog.get_logger(__name__)

CHILD_DIED = "the scoring process died on this text"

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
        from core.settings import Settings
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
    prediction-drift baseline) and ``score``; ``close`` stops the child; ``rebuilds``
    counts the children replaced after dying.
    """

    def __init__(self, uri: str, settings: Settings, *, threads: int | None = None) -> None:
        self._settings_json = settings.model_dump_json()
        self._threads = threads
        self._lock = threading.Lock()
        self.rebuilds = 0
        self._pool = self._spawn(uri)
        try:
            self.model_version: str = self._pool.submit(_child_version).result()
            raw_reference = self._pool.submit(_child_reference).result()
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        # a rebuilt child loads this very version, wherever the alias points by then
        self._uri = f"{MODELS_SCHEME}{self.model_version}" if is_registry_uri(uri) else uri
        from scoring.drift import ReferenceDistribution

        self.reference = ReferenceDistribution.from_dict(raw_reference) if raw_reference else None

    def _spawn(self, uri: str) -> ProcessPoolExecutor:
        import multiprocessing

        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(uri, self._settings_json, self._threads),
        )

    def child_pid(self) -> int:
        """The child process's pid (it answers, so it is alive)."""
        return int(self._submit(self._current_pool(), os.getpid))

    def score(self, texts: Sequence[object]) -> list[Any]:
        """One result per text; a dead child is rebuilt and the batch scored again.

        Raises only when the child cannot be rebuilt (the model no longer loads). Safe to
        call from several threads: their batches queue for the one child, and a child that
        dies under two of them is replaced once.
        """
        batch = [str(t) for t in texts]
        for _ in range(2):
            pool = self._current_pool()
            try:
                return list(self._submit(pool, _child_score, batch))
            except BrokenProcessPool:
                self._rebuild(pool)
        return [self._score_alone(text) for text in batch]  # one of these texts kills the child

    def _score_alone(self, text: str) -> Any:
        pool = self._current_pool()
        try:
            return self._submit(pool, _child_score, [text])[0]
        except BrokenProcessPool:
            self._rebuild(pool)
            from scoring.runtime import TextScore

            log.error("the scoring process died on one text", model_version=self.model_version)
            return TextScore(label=None, model_version=self.model_version, error=CHILD_DIED)

    def _current_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            return self._pool

    def _submit(self, pool: ProcessPoolExecutor, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in ``pool``'s child and wait for its result (the one way in)."""
        return pool.submit(fn, *args).result()

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        """Replace the dead child of ``broken`` with a fresh one serving the same version.

        Raises when the new child cannot serve it; the dead one then stays in place, so the
        next batch tries again rather than being scored by anything else. Does nothing when
        ``broken`` was already replaced (another batch in flight saw the same death).
        """
        with self._lock:
            if self._pool is not broken:
                return
            log.warning("the scoring process died; starting a new one", model_version=self.model_version)
            pool = self._spawn(self._uri)
            try:
                version = pool.submit(_child_version).result()
                if version != self.model_version:
                    raise RuntimeError(f"a new scoring process serves {version}, not {self.model_version}")
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = pool
            self.rebuilds += 1

    def close(self) -> None:
        """Wait for an in-flight batch, then stop the child."""
        with self._lock:
            pool = self._pool
        pool.shutdown(wait=True)
