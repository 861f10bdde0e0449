"""Grafana dashboards as code: each file is a loadable dashboard on the provisioned datasource,
and every PromQL expression names metrics the project really exports and parses in Prometheus.

A dashboard whose query names a metric nobody exports draws an empty panel forever, which
looks exactly like "nothing happened"; these tests make a renamed metric fail here instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric

from core.settings import load_settings
from tests.platform.test_prometheus_rules import promtool

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "cryptopulse.yml"
COMPOSE = ROOT / "docker-compose.kafka.yml"
EXPECTED = {"pipeline-health.json", "model.json", "market.json"}
# Grafana 11 (the pinned image) reads schema 39 natively and migrates older ones on load.
MIN_SCHEMA_VERSION = 39
# Series Prometheus itself writes for every scrape target (not exported by any service).
PROMETHEUS_SYNTHETIC = {"up"}
# Grafana's built-in interval variables, as Grafana would fill them for a 6-hour view.
GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h"}


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text("utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def expressions(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def provisioned_uid() -> str:
    (source,) = yaml.safe_load(DATASOURCES.read_text("utf-8"))["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


# --- a small PromQL tokenizer: metric names only ------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([A-Za-z_:][A-Za-z0-9_:]*)"')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(
    r"(?<![\w:.])(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w:])", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, numbers, label names (in ``{...}`` or ``by (...)``) or durations."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


@pytest.mark.unit
def test_tokenizer_finds_metrics_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(api_seconds_bucket{status=~"5..", x="a b"}'
        "[$__rate_interval]))) / on (job) group_left sum without (pod) (rate(x_total[5m] offset 1h))"
        " > bool 1e-3 and up"
    )
    assert metric_names(expr) == {"api_seconds_bucket", "x_total", "up"}
    assert metric_names("time() - max(last_ts)") == {"last_ts"}
    assert metric_names('{__name__="named_total", job="api"}') == {"named_total"}
    assert metric_names("sum(rate(a:recorded[1m])) by (le)") == {"a:recorded"}


# --- what the project exports -------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def _series_names(families: list[Metric]) -> set[str]:
    """Exposed series names: the samples present plus what each family type exposes once its
    labelled children exist (an unused labelled counter has no samples yet)."""
    names: set[str] = set()
    for family in families:
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def exported_metric_names() -> set[str]:
    """Every series name the services serve: the default registry (producers, stream worker,
    API, with prometheus_client's process metrics) and the registries of the Spark job, the
    retraining service and supervisord's restart listener."""
    import api.metrics  # noqa: F401
    import producers.metrics  # noqa: F401
    import stream_processors.metrics
    import stream_processors.monitors.drift  # noqa: F401
    from cryptopulse.platform.events import RestartCounter
    from retraining.service import Metrics as RetrainMetrics
    from spark_jobs.metrics import SparkMetrics

    spark = SparkMetrics(registry=CollectorRegistry()).registry
    supervisor = CollectorRegistry()
    with tempfile.TemporaryDirectory() as folder:
        RestartCounter(Path(folder) / "restarts.json", supervisor)
    retrain = RetrainMetrics().registry
    families = [*REGISTRY.collect(), *spark.collect(), *supervisor.collect(), *retrain.collect()]
    return _series_names(families)


@pytest.mark.unit
def test_exported_names_follow_the_exposition_format() -> None:
    exported = exported_metric_names()
    assert {
        "cryptopulse_stream_dead_letters_total",
        "cryptopulse_spark_batch_duration_seconds_bucket",
    } <= exported
    assert "cryptopulse_service_restarts_total" in exported, "supervisord's restart listener"
    assert "process_start_time_seconds" in exported, "the default registry's process collector"
    assert "cryptopulse_stream_dead_letters" not in exported, "a counter is exposed with _total"


# --- the dashboards -----------------------------------------------------------------------------


@pytest.mark.unit
def test_every_dashboard_is_there_and_loadable() -> None:
    boards = dashboards()
    assert set(boards) == EXPECTED
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids), "dashboard uids must be unique"
    for name, board in boards.items():
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"]), (
            f"{name}: Grafana uids are <= 40 safe chars"
        )
        assert board["title"].startswith("CryptoPulse / "), name
        assert board["schemaVersion"] >= MIN_SCHEMA_VERSION, name
        assert board.get("id") is None, f"{name}: a provisioned dashboard carries no database id"
        assert isinstance(board["refresh"], str), name


@pytest.mark.unit
def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    for name, board in dashboards().items():
        ids = [panel["id"] for panel in panels(board)]
        assert all(isinstance(i, int) and i > 0 for i in ids), name
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        occupied: set[tuple[int, int]] = set()
        for panel in panels(board):
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']}"
            cells = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & occupied, f"{name}: {panel['title']} overlaps another panel"
            occupied |= cells


@pytest.mark.unit
def test_every_query_uses_the_provisioned_datasource() -> None:
    uid = provisioned_uid()
    for name, board in dashboards().items():
        queried = [panel for panel in panels(board) if panel.get("targets")]
        assert queried, f"{name} has no queries"
        for panel in queried:
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            refs = [target["refId"] for target in panel["targets"]]
            assert len(set(refs)) == len(refs), where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert target["expr"].strip(), where
        assert board["templating"]["list"] == [], f"{name}: a variable needs a value in the parse test"


@pytest.mark.unit
def test_every_query_names_metrics_the_services_export() -> None:
    exported = exported_metric_names() | PROMETHEUS_SYNTHETIC
    missing = {
        f"{name}: {title}: {metric}"
        for name, board in dashboards().items()
        for title, expr in expressions(board)
        for metric in metric_names(expr)
        if metric not in exported
    }
    assert not missing, f"queries name metrics no service exports: {sorted(missing)}"
    named = {
        metric
        for board in dashboards().values()
        for _, expr in expressions(board)
        for metric in metric_names(expr)
    }
    assert len(named) >= 30, "the tokenizer lost the metric names"


@pytest.mark.unit
def test_grafana_loads_the_dashboards_from_the_compose_mount() -> None:
    (provider,) = yaml.safe_load(PROVIDER.read_text("utf-8"))["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False, "the JSON files are the source of truth"
    path = provider["options"]["path"]
    grafana = yaml.safe_load(COMPOSE.read_text("utf-8"))["services"]["grafana"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    (source,) = yaml.safe_load(DATASOURCES.read_text("utf-8"))["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert source["jsonData"]["timeInterval"] == load_settings().prometheus.scrape_interval


def _fill(expr: str) -> str:
    for variable, value in GRAFANA_BUILTINS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _check_as_rules(exprs: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on one recording rule per expression: the same PromQL parser as
    the server, without needing a running Prometheus."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = folder / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), "utf-8")
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)


@pytest.mark.unit
def test_every_query_parses_in_prometheus(tmp_path: Path) -> None:
    """Prometheus's own parser accepts each expression (a syntax error fails here; an unknown
    metric would only draw an empty panel, which the export test above catches)."""
    exprs = [_fill(expr) for board in dashboards().values() for _, expr in expressions(board)]
    assert exprs, "no dashboard query found"
    parsed = _check_as_rules(exprs, tmp_path)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    broken = _check_as_rules(["sum(rate(up[1m])"], tmp_path)
    assert broken.returncode != 0, "promtool must reject a syntax error"
