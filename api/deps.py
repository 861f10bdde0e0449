"""FastAPI dependencies (Annotated aliases): app state, authentication + rate limit, params."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.metrics import AUTH_FAILURES, RATE_LIMITED
from api.problems import ProblemError
from api.security import ANONYMOUS, Principal
from api.state import AppState
from schemas.events import WindowSize

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key from `cryptopulse apikey create`"
)
bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.cp
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def authenticate(
    request: Request,
    state: StateDep,
    api_key: Annotated[str | None, Depends(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Resolve the caller's API key (when auth is enabled) and apply its rate limit."""
    api = state.settings.api
    if not api.auth_enabled:
        return ANONYMOUS
    key = api_key or (credentials.credentials if credentials else None)
    if not key:
        AUTH_FAILURES.inc()
        raise ProblemError(
            401,
            "Unauthorized",
            "missing API key: send it in the X-API-Key header or as a Bearer token",
            slug="missing-api-key",
            headers={"WWW-Authenticate": 'Bearer realm="cryptopulse"'},
        )
    principal = await state.verifier.verify(key)
    if principal is None:
        AUTH_FAILURES.inc()
        raise ProblemError(
            401,
            "Unauthorized",
            "invalid or revoked API key",
            slug="invalid-api-key",
            headers={"WWW-Authenticate": 'Bearer realm="cryptopulse", error="invalid_token"'},
        )
    request.state.principal = principal
    limit = principal.rate_limit_per_minute or api.rate_limit_per_minute
    decision = await state.limiter.hit(principal.key_id, limit)
    headers = {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(decision.remaining)}
    if not decision.allowed:
        RATE_LIMITED.inc()
        raise ProblemError(
            429,
            "Too many requests",
            f"rate limit of {limit} requests per {api.rate_limit_window_s}s exceeded for key "
            f"{principal.key_id}; retry after {decision.retry_after_s}s",
            slug="rate-limited",
            headers={**headers, "Retry-After": str(decision.retry_after_s)},
        )
    # Added to the response by MetricsMiddleware, also when a route returns a Response itself.
    request.state.rate_headers = headers
    return principal


def api_key_required(required: bool) -> list[params.Depends]:
    """Router dependencies: the API-key check and rate limit when ``required``, else none."""
    return [Depends(authenticate)] if required else []


COIN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
"""A CoinGecko-style coin id, as ``schemas.events.CoinId`` validates it."""

WindowQuery = Annotated[WindowSize, Query(description="window size: 1m, 5m, 1h, 1d or 1h_5m (sliding)")]
CoinPath = Annotated[
    str,
    Path(
        pattern=COIN_ID_PATTERN,
        description="CoinGecko-style coin id",
        examples=["bitcoin"],
    ),
]


async def tracked_coin(coin: CoinPath, state: StateDep) -> str:
    """The path's coin when it is tracked; 404 otherwise."""
    if not await state.store.is_tracked(coin):
        raise ProblemError(404, "Unknown coin", f"coin {coin!r} is not tracked", slug="unknown-coin")
    return coin


TrackedCoin = Annotated[str, Depends(tracked_coin)]
