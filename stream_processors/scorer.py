"""Micro-batch scoring and model hot swap, independent of faust so both are unit-testable.

:class:`ModelHolder` owns the current :class:`scoring.runtime.SentimentRuntime`. The
score agent takes ``holder.current`` once per micro-batch, so a batch is scored by
exactly one model and a swap between batches cannot lose or double-score an event:
swapping only replaces the reference the *next* batch reads. The new model is loaded
in a thread while the old one keeps serving, and the reference is replaced only
after the load succeeded (a broken new version leaves the old one in place).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from schemas.events import CleanPost, ScoredPost, SentimentLabel, utc_now

log = structlog.get_logger(__name__)


class ScoreLike(Protocol):
    """What :meth:`SentimentRuntime.score` returns per text (scoring.runtime.TextScore)."""

    label: Any
    score: float | None
    confidence: float | None
    p_negative: float | None
    p_neutral: float | None
    p_positive: float | None
    model_version: str
    error: str | None


class RuntimeLike(Protocol):
    model_version: str

    def score(self, texts: Sequence[object]) -> Sequence[Any]: ...


@dataclass(frozen=True)
class BatchResult:
    """Scored posts plus (post, reason) pairs the model refused, for the dead-letter topic."""

    scored: list[ScoredPost]
    failed: list[tuple[CleanPost, str]]
    model_version: str
    inference_s: float


def score_batch(runtime: RuntimeLike, posts: Sequence[CleanPost]) -> BatchResult:
    """Score ``posts`` with one runtime call; every post ends in ``scored`` or ``failed``."""
    started = time.perf_counter()
    results = list(runtime.score([p.text for p in posts])) if posts else []
    inference_s = time.perf_counter() - started
    if len(results) != len(posts):
        raise RuntimeError(f"runtime returned {len(results)} scores for {len(posts)} texts")
    scored: list[ScoredPost] = []
    failed: list[tuple[CleanPost, str]] = []
    now = utc_now()
    for post, result in zip(posts, results, strict=True):
        if result.error is not None or result.label is None:
            failed.append((post, result.error or "no label"))
            continue
        scored.append(
            ScoredPost(
                **post.model_dump(),
                label=SentimentLabel(str(getattr(result.label, "value", result.label))),
                score=_clip(result.score, -1.0, 1.0),
                confidence=_clip(result.confidence, 0.0, 1.0),
                p_negative=_clip(result.p_negative, 0.0, 1.0),
                p_neutral=_clip(result.p_neutral, 0.0, 1.0),
                p_positive=_clip(result.p_positive, 0.0, 1.0),
                model_version=result.model_version,
                scored_time=now,
            )
        )
    return BatchResult(scored, failed, runtime.model_version, inference_s)


def _clip(value: float | None, low: float, high: float) -> float:
    return min(high, max(low, float(value or 0.0)))


class ModelHolder:
    """The runtime in service plus the hot-swap logic driven by a periodic registry poll.

    ``loader(uri)`` returns a runtime; ``resolver(uri)`` returns the version label the
    registry alias points to now (None when it cannot tell). Both run in a thread.
    """

    def __init__(
        self,
        uri: str,
        loader: Callable[[str], RuntimeLike],
        resolver: Callable[[str], str | None] | None = None,
    ) -> None:
        self.uri = uri
        self._loader = loader
        self._resolver = resolver
        self._runtime: RuntimeLike | None = None
        self._lock = asyncio.Lock()
        self.swaps = 0
        self.on_swap: list[Callable[[str, str], None]] = []

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    @property
    def current(self) -> RuntimeLike:
        if self._runtime is None:
            raise RuntimeError(f"model {self.uri} not loaded yet")
        return self._runtime

    @property
    def version(self) -> str | None:
        return self._runtime.model_version if self._runtime is not None else None

    async def load(self) -> RuntimeLike:
        """Load the model at start-up (in a thread: it takes seconds)."""
        async with self._lock:
            runtime = await asyncio.to_thread(self._loader, self.uri)
            self._runtime = runtime
            log.info("model loaded", uri=self.uri, model_version=runtime.model_version)
        if self._resolver is not None:
            # First registry call now, not at the first poll: importing the MLflow client
            # holds the GIL for seconds and would stall the stream mid-flight.
            try:
                await asyncio.to_thread(self._resolver, self.uri)
            except Exception as exc:
                log.warning("model registry not reachable yet", uri=self.uri, error=str(exc))
        return runtime

    async def close(self) -> None:
        """Release the runtime (stops a scoring child process)."""
        runtime, self._runtime = self._runtime, None
        await _close(runtime)

    async def maybe_swap(self) -> bool:
        """Swap in the version the alias points to now, if it moved; True when swapped."""
        if self._resolver is None or self._lock.locked():
            return False
        async with self._lock:
            try:
                wanted = await asyncio.to_thread(self._resolver, self.uri)
            except Exception as exc:  # registry down: keep serving the current model
                log.warning("model registry poll failed", uri=self.uri, error=str(exc))
                return False
            if wanted is None or wanted == self.version:
                return False
            try:
                runtime = await asyncio.to_thread(self._loader, self.uri)
            except Exception as exc:
                log.error("hot swap load failed; keeping current model", wanted=wanted, error=str(exc))
                return False
            old = self.version or "none"
            if runtime.model_version == old:
                await _close(runtime)
                return False
            previous, self._runtime = self._runtime, runtime
            self.swaps += 1
            for callback in self.on_swap:
                callback(old, runtime.model_version)
            log.info("model hot-swapped", old=old, new=runtime.model_version, uri=self.uri)
            await _close(previous)  # waits for a batch still in flight on the old model
            return True


async def _close(runtime: Any) -> None:
    close = getattr(runtime, "close", None)
    if close is not None:
        await asyncio.to_thread(close)


def registry_resolver(settings: Any) -> Callable[[str], str | None]:
    """Version label (``name/version``, as the runtime reports it) the alias points to now."""

    def resolve(uri: str) -> str | None:
        from mlflow import MlflowClient

        from scoring.runtime import parse_models_uri

        if not uri.startswith("models:/"):
            return None
        name, alias, version = parse_models_uri(uri)
        if alias is None:
            return f"{name}/{version}"
        client = MlflowClient(tracking_uri=settings.mlflow.uri, registry_uri=settings.mlflow.uri)
        return f"{name}/{client.get_model_version_by_alias(name, alias).version}"

    return resolve


def runtime_loader(settings: Any) -> Callable[[str], RuntimeLike]:
    def load(uri: str) -> RuntimeLike:
        from scoring.runtime import SentimentRuntime

        return SentimentRuntime.load(uri, settings)

    return load


# -- scoring in a child process ------------------------------------------------------------

_CHILD_RUNTIME: Any = None
_CHILD_ERROR: str | None = None


def _exit_with_parent(parent: int) -> None:
    """Exit when the worker dies (even by SIGKILL): an orphaned child would keep its model in RAM."""
    import os

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _child_init(uri: str, settings_json: str) -> None:
    """Pool initializer: load the model once in the child process.

    A failure is kept and re-raised by :func:`_child_version`, so the worker logs the real
    cause instead of a bare "process pool terminated abruptly".
    """
    global _CHILD_RUNTIME, _CHILD_ERROR
    import os
    import threading

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        from cryptopulse.settings import Settings
        from scoring.runtime import SentimentRuntime

        settings = Settings.model_validate_json(settings_json)
        _CHILD_RUNTIME = SentimentRuntime.load(uri, settings)
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


class ProcessRuntime:
    """A :class:`RuntimeLike` whose model lives in a dedicated child process.

    The event loop's process keeps the GIL for faust, cleaning and serialization while
    tokenization, TF-IDF, the lexicon and onnxruntime run in parallel in the child;
    ``score`` blocks only the calling thread (the agent calls it via ``to_thread``).
    """

    def __init__(self, uri: str, settings: Any) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(uri, settings.model_dump_json()),
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


def process_runtime_loader(settings: Any) -> Callable[[str], RuntimeLike]:
    def load(uri: str) -> RuntimeLike:
        return ProcessRuntime(uri, settings)

    return load
