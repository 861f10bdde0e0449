"""HTTP views on the faust web server (settings.stream.web_port): /metrics and /stream/health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from scoring.holder import ModelHolder


def register_views(app: faust.App, holder: ModelHolder) -> None:
    """Attach the Prometheus exposition and a JSON health page to the app."""

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/stream/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            body: dict[str, Any] = {
                "model_loaded": holder.loaded,
                "model_version": holder.version,
                "model_uri": holder.uri,
                "model_swaps": holder.swaps,
                "group_id": app.conf.id,
            }
            return self.json(body, status=200 if holder.loaded else 503)
