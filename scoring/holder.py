"""The one way components load a scoring model and keep it current.

* :func:`load_runtime` loads the model at a ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``
  or directory URI, in this process or in a child process.
* :class:`ModelHolder` is what servers (the API, the stream worker) hold: the model is
  loaded once, and :meth:`ModelHolder.maybe_swap` follows the registry alias, so a moved
  ``champion`` is picked up without a restart.
* :func:`process_runtime` gives batch jobs (the Spark backfill's UDF) one runtime per
  process however many batches they score.

Readers take ``holder.current`` once per unit of work (a request, a micro-batch), so each
unit is scored by exactly one model, and a swap between two units cannot lose or
double-score anything: swapping only replaces the reference the *next* unit reads. A new
version is loaded in a thread while the old one keeps serving, and replaces it only after
it loaded (a broken new version leaves the old one in place).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from scoring.registry_uri import is_registry_uri, resolve_version

if TYPE_CHECKING:
    from core.settings import Settings
    from scoring.runtime import SentimentRuntime

log = structlog.get_logger(__name__)


class ScoringRuntime(Protocol):
    """What servers need of a runtime (:class:`scoring.runtime.SentimentRuntime` or its
    child-process host :class:`scoring.child_process.ChildProcessRuntime`)."""

    model_version: str

    def score(self, texts: Sequence[object]) -> Sequence[Any]: ...


Loader = Callable[[str], ScoringRuntime]
"""URI -> a loaded runtime (blocking: it takes seconds)."""
Resolver = Callable[[str], str | None]
"""URI -> the version label (``NAME/VERSION``) its alias points to now; None: nothing to follow."""


def load_runtime(
    uri: str, settings: Settings, *, threads: int | None = None, child_process: bool = False
) -> ScoringRuntime:
    """Load the model at ``uri``; ``child_process`` hosts it in a process of its own.

    ``threads`` overrides ``model.intra_op_threads`` (a batch job owns the machine).
    """
    if child_process:
        from scoring.child_process import ChildProcessRuntime

        return ChildProcessRuntime(uri, settings, threads=threads)
    from scoring.runtime import SentimentRuntime

    return SentimentRuntime.load(uri, settings, threads=threads)


def registry_resolver(settings: Settings) -> Resolver:
    """A :data:`Resolver` that asks the registry at ``settings.mlflow.uri``."""

    def resolve(uri: str) -> str | None:
        return resolve_version(uri, settings).label if is_registry_uri(uri) else None

    return resolve


_PROCESS_RUNTIMES: dict[tuple[str, str], SentimentRuntime] = {}
_PROCESS_LOCK = threading.Lock()


def process_runtime(uri: str, settings: Settings) -> SentimentRuntime:
    """The runtime of ``uri`` in this process, loaded on the first call and reused after.

    For batch jobs that score in many calls (a Spark pandas UDF is called per Arrow batch
    in each Python worker). Pin an alias first (:func:`scoring.registry_uri.pinned_uri`)
    so every process scores with the same version.
    """
    from scoring.runtime import SentimentRuntime

    key = (uri, settings.model_dump_json())
    with _PROCESS_LOCK:
        runtime = _PROCESS_RUNTIMES.get(key)
        if runtime is None:
            runtime = _PROCESS_RUNTIMES[key] = SentimentRuntime.load(uri, settings)
    return runtime


class ModelHolder:
    """The runtime in service, loaded once, swapped when the registry alias moves.

    ``loader(uri)`` returns a runtime; ``resolver(uri)`` returns the version label the
    alias points to now (None when there is nothing to follow). Both run in a thread.
    ``error`` says why no model is in service (None once one is).
    """

    def __init__(self, uri: str, loader: Loader, resolver: Resolver | None = None) -> None:
        self.uri = uri
        self._loader = loader
        self._resolver = resolver
        self._runtime: ScoringRuntime | None = None
        self._lock = asyncio.Lock()
        self.error: str | None = "not loaded yet"
        self.swaps = 0
        self.on_swap: list[Callable[[str, str], None]] = []

    @classmethod
    def from_settings(
        cls, settings: Settings, uri: str | None = None, *, child_process: bool = False
    ) -> ModelHolder:
        """A holder of ``uri`` (default ``model.uri``) that follows its alias in ``settings``' registry."""

        def load(model_uri: str) -> ScoringRuntime:
            return load_runtime(model_uri, settings, child_process=child_process)

        return cls(uri or settings.model.uri, load, registry_resolver(settings))

    @classmethod
    def holding(cls, runtime: ScoringRuntime, uri: str) -> ModelHolder:
        """A holder already serving ``runtime`` (built by the caller, e.g. a test double)."""
        holder = cls(uri, lambda _uri: runtime)
        holder._runtime, holder.error = runtime, None
        return holder

    @property
    def runtime(self) -> ScoringRuntime | None:
        """The runtime in service, or None (then ``error`` says why)."""
        return self._runtime

    @property
    def loaded(self) -> bool:
        return self._runtime is not None

    @property
    def current(self) -> ScoringRuntime:
        """The runtime in service; take it once per unit of work."""
        if self._runtime is None:
            raise RuntimeError(f"model {self.uri} not loaded yet")
        return self._runtime

    @property
    def version(self) -> str | None:
        return str(self._runtime.model_version) if self._runtime is not None else None

    async def load(self) -> ScoringRuntime:
        """Load the model (in a thread: it takes seconds); a failure is kept in ``error`` and raised."""
        async with self._lock:
            try:
                runtime = await asyncio.to_thread(self._loader, self.uri)
            except Exception as exc:  # ModelLoadError, ImportError, MLflow/network errors
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            self._runtime, self.error = runtime, None
            log.info("model loaded", uri=self.uri, model_version=runtime.model_version)
        if self._resolver is not None:
            # First registry call now, not at the first poll: importing the MLflow client
            # holds the GIL for seconds and would stall a stream mid-flight.
            try:
                await asyncio.to_thread(self._resolver, self.uri)
            except Exception as exc:
                log.warning("model registry not reachable yet", uri=self.uri, error=str(exc))
        return runtime

    async def maybe_swap(self) -> bool:
        """Follow the alias: swap in the version it points to now, if it moved; True when swapped.

        Skipped while a load or another swap is under way; a registry or load failure keeps
        the current model in service.
        """
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
            previous, self._runtime, self.error = self._runtime, runtime, None
            self.swaps += 1
            for callback in self.on_swap:
                callback(old, runtime.model_version)
            log.info("model hot-swapped", old=old, new=runtime.model_version, uri=self.uri)
            await _close(previous)  # waits for a unit of work still in flight on the old model
            return True

    async def close(self) -> None:
        """Release the runtime (stops a scoring child process)."""
        runtime, self._runtime = self._runtime, None
        self.error = "closed"
        await _close(runtime)


async def _close(runtime: Any) -> None:
    close = getattr(runtime, "close", None)
    if close is not None:
        await asyncio.to_thread(close)
