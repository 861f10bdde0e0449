"""`cryptopulse up` supervises the retraining service like the other stages."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from core.settings import load_settings
from cryptopulse.platform.pipeline import PIPELINE_SERVICES, RetrainService
from cryptopulse.platform.supervisor import Supervisor
from retraining.service import STOP_GRACE_S

pytestmark = pytest.mark.unit


def test_the_retrain_service_is_supervised_and_stops_its_run_in_time(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert RetrainService in PIPELINE_SERVICES
    service = RetrainService(settings)
    assert service.port == settings.learning.orchestrator_metrics_port
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(Supervisor(settings).program_config(service, {}, tmp_path))
    program = parser["program:retrain"]
    assert program["command"].endswith("-m cryptopulse retrain serve")
    # SIGTERM to the service alone, so it can cancel its training child before supervisord kills
    assert program["stopasgroup"] == "false"
    assert int(program["stopwaitsecs"]) > STOP_GRACE_S
    assert program["autorestart"] == "unexpected"
