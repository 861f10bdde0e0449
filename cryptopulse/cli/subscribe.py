"""``cryptopulse subscribe TOPIC``: follow a catalog topic from the terminal.

The Kafka way to subscribe to sentiment (scored posts, trend windows, alerts, dead
letters) without writing a consumer: records are decoded with the topic's schema,
filtered by coin, and printed as JSON lines (for pipes: ``| jq``) or one readable line
each. A read-only consumer (no group offsets, nothing committed), so following a topic
never moves anyone's position.
"""

from __future__ import annotations

import json
import signal
import time
from enum import StrEnum
from typing import Annotated, Any

import typer

from core.cli import console, err_console, fail, load_cli_settings


class OutputFormat(StrEnum):
    JSONL = "jsonl"
    PRETTY = "pretty"


def _coins(event: Any) -> set[str]:
    coins = set(getattr(event, "coins", ()) or ())
    if getattr(event, "coin", None):
        coins.add(str(event.coin))
    return coins


def describe(event: Any) -> str:
    """One human line per record (the JSON has everything; this is for eyes)."""
    record_type = type(event).record_type
    when = f"{event.event_time:%Y-%m-%d %H:%M:%S}"
    if record_type == "scored_post":
        coins = ",".join(event.coins) or "-"
        text = " ".join(event.text.split())[:100]
        return f"{when}  {event.label.value:<8} {event.score:+.2f}  {coins:<16} {text}"
    if record_type == "trend_window":
        return (
            f"{event.window_start:%Y-%m-%d %H:%M}  {event.coin:<12} {event.window.value:<5} "
            f"{event.source:<7} volume {event.volume:<5} score {event.weighted_score:+.3f}"
        )
    if record_type == "alert":
        return f"{when}  {event.severity.value.upper():<8} {event.kind:<15} {event.message}"
    if record_type == "dead_letter":
        return f"{when}  {event.component:<16} {event.reason:<20} {event.detail[:100]}"
    return f"{when}  {record_type:<14} {event.source_id}"


def register(app: typer.Typer) -> None:
    """Add the ``subscribe`` command to the CLI."""

    @app.command("subscribe")
    def subscribe(
        topic: Annotated[
            str, typer.Argument(help="catalog topic: scored.posts, trends, alerts, deadletter, ...")
        ],
        coin: Annotated[
            list[str] | None,
            typer.Option("--coin", "-c", help="only records about this coin id (repeatable)"),
        ] = None,
        last: Annotated[int, typer.Option(min=0, help="also print the last N records of each partition")] = 0,
        from_beginning: Annotated[bool, typer.Option(help="start at the oldest retained record")] = False,
        max_records: Annotated[
            int | None, typer.Option("--max", min=1, help="exit after printing this many records")
        ] = None,
        timeout: Annotated[float | None, typer.Option(min=0.1, help="exit after this many seconds")] = None,
        output: Annotated[
            OutputFormat, typer.Option("--format", help="jsonl or pretty")
        ] = OutputFormat.JSONL,
    ) -> None:
        """Follow a topic: decoded records as JSON lines (or readable lines), filtered by coin.

        Undecodable records are reported on stderr with the reason and skipped. Ctrl-C exits 0.
        """
        from confluent_kafka import KafkaException

        from core.kafka import broker_ready, follow_topic
        from schemas.topics import CATALOG

        settings = load_cli_settings()
        by_suffix = {spec.suffix: spec for spec in CATALOG}
        by_name = {spec.name(settings): spec for spec in CATALOG}
        spec = by_suffix.get(topic) or by_name.get(topic)
        if spec is None:
            raise fail(f"unknown topic {topic!r}; one of: {', '.join(by_suffix)}", code=2)
        if not broker_ready(settings):
            raise fail(f"Kafka is not reachable at {settings.kafka.bootstrap}; run `cryptopulse up`")
        wanted = {c.lower() for c in coin or ()}
        deadline = time.monotonic() + timeout if timeout is not None else None
        interrupted = False

        def on_signal(signum: int, frame: Any) -> None:
            nonlocal interrupted
            interrupted = True

        previous = signal.signal(signal.SIGTERM, on_signal)
        printed = skipped = 0
        try:
            records = follow_topic(
                settings,
                spec,
                start="beginning" if from_beginning else "end",
                last=last,
                stop=lambda: interrupted or (deadline is not None and time.monotonic() > deadline),
            )
            for received in records:
                if received.event is None:
                    skipped += 1
                    err_console.print(
                        f"skipped {spec.suffix}[{received.partition}]@{received.offset}: {received.error}",
                        highlight=False,
                        markup=False,
                    )
                    continue
                if wanted and not (_coins(received.event) & wanted):
                    continue
                if output is OutputFormat.JSONL:
                    typer.echo(json.dumps(received.event.model_dump(mode="json"), ensure_ascii=False))
                else:
                    console.print(describe(received.event), highlight=False, markup=False)
                printed += 1
                if max_records is not None and printed >= max_records:
                    break
        except KeyboardInterrupt:
            pass
        except LookupError as exc:
            raise fail(f"{exc}; run `cryptopulse topics --create`") from None
        except KafkaException as exc:
            raise fail(f"Kafka at {settings.kafka.bootstrap} did not answer: {exc}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        if skipped:
            err_console.print(f"{skipped} records did not match the {spec.suffix} schema", highlight=False)
