"""ModelHolder (load once, follow the alias), the child-process runtime and per-process loading."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from model_export.train import TrainResult
from scoring.child_process import ChildProcessRuntime
from scoring.holder import ModelHolder, load_runtime, process_runtime
from scoring.registry_uri import ModelLoadError, pinned_uri


class FakeRuntime:
    """Scores every text with its version; remembers being closed."""

    def __init__(self, version: str) -> None:
        self.model_version = version
        self.closed = False

    def score(self, texts: Sequence[object]) -> list[str]:
        return [self.model_version for _ in texts]

    def close(self) -> None:
        self.closed = True


class MovableAlias:
    """A registry stand-in: the alias points at one of the runtimes, and can be moved."""

    def __init__(self, *versions: str) -> None:
        self.runtimes = {v: FakeRuntime(v) for v in versions}
        self.now = versions[0]

    def load(self, uri: str) -> FakeRuntime:
        return self.runtimes[self.now]

    def resolve(self, uri: str) -> str:
        return self.now


@pytest.mark.unit
def test_follows_the_alias_between_units_of_work() -> None:
    alias = MovableAlias("m/1", "m/2")

    async def scenario() -> None:
        holder = ModelHolder("models:/m@champion", alias.load, alias.resolve)
        swaps: list[tuple[str, str]] = []
        holder.on_swap.append(lambda old, new: swaps.append((old, new)))
        assert holder.error == "not loaded yet" and holder.runtime is None
        await holder.load()
        in_flight = holder.current  # a unit of work in flight keeps its model
        assert not await holder.maybe_swap()  # the alias did not move
        alias.now = "m/2"
        assert await holder.maybe_swap()
        assert in_flight.score(["x"]) == ["m/1"] and alias.runtimes["m/1"].closed
        assert holder.current.score(["x"]) == ["m/2"]
        assert holder.version == "m/2" and holder.swaps == 1 and holder.error is None
        assert swaps == [("m/1", "m/2")]

    asyncio.run(scenario())


@pytest.mark.unit
def test_failed_swap_keeps_current_model() -> None:
    def loader(uri: str) -> FakeRuntime:
        if holder.loaded:
            raise ModelLoadError("broken artifact")
        return FakeRuntime("m/1")

    holder = ModelHolder("u", loader, lambda uri: "m/2")

    async def scenario() -> None:
        await holder.load()
        assert not await holder.maybe_swap()
        assert holder.current.model_version == "m/1" and holder.swaps == 0

    asyncio.run(scenario())


@pytest.mark.unit
def test_registry_down_keeps_serving() -> None:
    def resolver(uri: str) -> str:
        raise ConnectionError("mlflow down")

    async def scenario() -> None:
        holder = ModelHolder("u", lambda uri: FakeRuntime("m/1"), resolver)
        await holder.load()  # the warm-up call fails too, and is only logged
        assert not await holder.maybe_swap()
        assert holder.version == "m/1"

    asyncio.run(scenario())


@pytest.mark.unit
def test_a_reload_of_the_same_version_is_no_swap() -> None:
    """The registry says m/2, but what loads still reports m/1 (e.g. the alias moved back)."""
    loaded: list[FakeRuntime] = []

    def loader(uri: str) -> FakeRuntime:
        loaded.append(FakeRuntime("m/1"))
        return loaded[-1]

    async def scenario() -> None:
        holder = ModelHolder("u", loader, lambda uri: "m/2")
        await holder.load()
        assert not await holder.maybe_swap()
        assert holder.current is loaded[0] and loaded[1].closed and holder.swaps == 0

    asyncio.run(scenario())


@pytest.mark.unit
def test_no_swap_while_a_load_is_under_way() -> None:
    release = threading.Event()

    def slow_loader(uri: str) -> FakeRuntime:
        release.wait(timeout=10)
        return FakeRuntime("m/1")

    async def scenario() -> None:
        holder = ModelHolder("u", slow_loader, lambda uri: "m/2")
        loading = asyncio.create_task(holder.load())
        await asyncio.sleep(0.05)
        assert not await holder.maybe_swap()  # skipped, not queued behind the load
        release.set()
        await loading
        assert holder.version == "m/1"

    asyncio.run(scenario())


@pytest.mark.unit
def test_load_failure_is_kept_and_raised() -> None:
    def loader(uri: str) -> FakeRuntime:
        raise ModelLoadError(f"model directory {uri} does not exist")

    holder = ModelHolder("/nowhere", loader)
    with pytest.raises(ModelLoadError):
        asyncio.run(holder.load())
    assert holder.error == "ModelLoadError: model directory /nowhere does not exist"
    assert not holder.loaded and holder.version is None
    with pytest.raises(RuntimeError, match="not loaded yet"):
        holder.current  # noqa: B018


@pytest.mark.unit
def test_holding_serves_at_once_and_close_releases() -> None:
    runtime = FakeRuntime("fake/1")
    holder = ModelHolder.holding(runtime, "models:/m@champion")
    assert holder.loaded and holder.current is runtime and holder.error is None
    assert not asyncio.run(holder.maybe_swap())  # nothing to follow
    asyncio.run(holder.close())
    assert runtime.closed and not holder.loaded and holder.error == "closed"


@pytest.mark.unit
def test_process_runtime_loads_once_per_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def fake_load(uri: str, settings: Settings) -> FakeRuntime:
        loads.append(uri)
        return FakeRuntime(uri)

    monkeypatch.setattr("scoring.runtime.SentimentRuntime.load", fake_load)
    settings = load_settings(home=tmp_path)
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    assert process_runtime(first, settings) is process_runtime(first, settings)
    assert process_runtime(second, settings).model_version == second
    assert loads == [first, second]


@pytest.mark.unit
def test_child_process_reports_the_real_load_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not a CryptoPulse model artifact"):
        ChildProcessRuntime(str(tmp_path), load_settings(home=tmp_path))


@pytest.mark.unit
@pytest.mark.slow
def test_directory_holder_in_a_child_process(tiny: TrainResult, tmp_path: Path) -> None:
    """A directory has no alias to follow; the child scores exactly like the in-process runtime."""
    settings = load_settings(home=tmp_path)
    uri = str(tiny.artifact_dir)
    texts = ["bitcoin to the moon", "", "rekt again, sold everything"]
    expected = load_runtime(uri, settings).score(texts)

    async def scenario() -> None:
        holder = ModelHolder.from_settings(settings, uri, child_process=True)
        try:
            await holder.load()
            assert holder.version == "tiny-test"
            assert not await holder.maybe_swap()
            assert list(holder.current.score(texts)) == list(expected)
        finally:
            await holder.close()

    asyncio.run(scenario())


# -- against the real registry -----------------------------------------------------------


@pytest.fixture
def two_versions(platform: Settings) -> Iterator[tuple[str, list[str]]]:
    """The tiny model registered twice under a throw-away name; champion -> the first."""
    from tests.stream_processors.model_fixture import delete_model, register_versions, tiny_model_dir

    name = f"test-holder-{uuid.uuid4().hex[:8]}"
    yield name, register_versions(platform, tiny_model_dir(platform), name, count=2)
    delete_model(platform, name)


@pytest.mark.integration
@pytest.mark.slow
def test_holder_follows_a_moved_champion(
    platform: Settings, two_versions: tuple[str, list[str]], tmp_path: Path
) -> None:
    from tests.stream_processors.model_fixture import move_champion

    name, (first, second) = two_versions
    settings = load_settings(home=tmp_path / "home", mlflow=platform.mlflow.model_dump(), cache_dir=tmp_path)
    uri = f"models:/{name}@champion"
    assert pinned_uri(uri, settings) == f"models:/{name}/{first}"

    async def scenario() -> None:
        holder = ModelHolder.from_settings(settings, uri)
        try:
            await holder.load()
            assert holder.version == f"{name}/{first}"
            assert not await holder.maybe_swap()
            move_champion(platform, name, second)
            assert await holder.maybe_swap()
            assert holder.version == f"{name}/{second}" and holder.swaps == 1
            assert holder.current.score(["bitcoin to the moon"])[0].model_version == f"{name}/{second}"
        finally:
            await holder.close()

    asyncio.run(scenario())
    assert pinned_uri(uri, settings) == f"models:/{name}/{second}"
    assert (tmp_path / "models" / name / second / "model.onnx").is_file()  # downloaded into this cache
