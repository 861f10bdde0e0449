"""Thin HTTP client of the API for the dashboard: one place for base URL, key and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from core.settings import Settings


@dataclass(frozen=True)
class ApiResult:
    """A decoded JSON body, or the problem's reason when the call failed."""

    data: Any = None
    error: str | None = None
    status: int | None = None
    """The HTTP status (None when the API was unreachable), e.g. to tell 404 from 503."""

    @property
    def ok(self) -> bool:
        return self.error is None


def api_base_url(settings: Settings) -> str:
    if settings.dashboard.api_url:
        return settings.dashboard.api_url.rstrip("/")
    host = "127.0.0.1" if settings.api.host in ("0.0.0.0", "::") else settings.api.host  # nosec B104 # maps a bind-all address to loopback for the client; binds nothing
    return f"http://{host}:{settings.api.port}"


class ApiClient:
    """Synchronous (Streamlit scripts are synchronous); failures become ``ApiResult.error``."""

    def __init__(self, settings: Settings) -> None:
        headers = {"User-Agent": "cryptopulse-dashboard"}
        if settings.dashboard.api_key is not None:
            headers["X-API-Key"] = settings.dashboard.api_key.get_secret_value()
        self.base_url = api_base_url(settings)
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=settings.dashboard.timeout_s
        )

    def get(self, path: str, **params: Any) -> ApiResult:
        clean = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._http.get(path, params=clean)
        except httpx.HTTPError as exc:
            return ApiResult(error=f"API at {self.base_url} unreachable: {exc}")
        return self._result(path, response)

    def post(self, path: str, body: dict[str, Any], **params: Any) -> ApiResult:
        """POST a JSON body (the dashboard's key goes along, as on every call)."""
        try:
            response = self._http.post(path, json=body, params=params or None)
        except httpx.HTTPError as exc:
            return ApiResult(error=f"API at {self.base_url} unreachable: {exc}")
        return self._result(path, response)

    @staticmethod
    def _result(path: str, response: httpx.Response) -> ApiResult:
        if response.status_code >= 400:
            try:
                problem = response.json()
                reason = problem.get("detail") or problem.get("title")
            except ValueError:
                reason = response.text[:200]
            return ApiResult(error=f"{path}: {response.status_code} {reason}", status=response.status_code)
        try:
            data = response.json()
        except ValueError:
            return ApiResult(error=f"{path}: not JSON: {response.text[:200]}", status=response.status_code)
        return ApiResult(data=data, status=response.status_code)
