"""FastAPI dependencies (Annotated aliases): app state, caller identity + rate limit, params."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, params
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.metrics import AUTH_FAILURES, RATE_LIMITED
from api.problems import ProblemError
from api.scopes import Scope
from api.security import Principal, anonymous
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


def client_address(request: Request) -> str:
    """The caller's network address.

    The socket peer, unless it is one of ``api.trusted_proxies``: then uvicorn's
    ProxyHeadersMiddleware (installed by ``create_app`` only in that case) has already
    replaced it with the client named in X-Forwarded-For, so a client cannot pick its
    own rate-limit bucket by sending that header.
    """
    return request.client.host if request.client else "unknown"


async def authenticate(
    request: Request,
    state: StateDep,
    api_key: Annotated[str | None, Depends(api_key_header)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Identify the caller (its API key when auth is enabled, else its address) and apply
    its rate limit."""
    api = state.settings.api
    if api.auth_enabled:
        key = api_key or (credentials.credentials if credentials else None)
        principal = await _verified(state, key)
        # Kept for the routes that re-check the key while they run (SSE streams).
        request.state.api_key = key
        limit = principal.rate_limit_per_minute or api.rate_limit_per_minute
    else:
        principal = anonymous(client_address(request))
        limit = api.anonymous_rate_limit_per_minute
    request.state.principal = principal
    if limit:
        await _rate_limit(request, state, principal, limit)
    return principal


async def _verified(state: AppState, key: str | None) -> Principal:
    """The key's principal; 401 when the key is missing, unknown or revoked."""
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
    return principal


async def _rate_limit(request: Request, state: AppState, principal: Principal, limit: int) -> None:
    window_s = state.settings.api.rate_limit_window_s
    decision = await state.limiter.hit(principal.key_id, limit)
    headers = {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(decision.remaining)}
    if not decision.allowed:
        RATE_LIMITED.inc()
        who = "client" if principal.key_id.startswith("ip:") else "key"
        raise ProblemError(
            429,
            "Too many requests",
            f"rate limit of {limit} requests per {window_s}s exceeded for {who} "
            f"{principal.key_id.removeprefix('ip:')}; retry after {decision.retry_after_s}s",
            slug="rate-limited",
            headers={**headers, "Retry-After": str(decision.retry_after_s)},
        )
    # Added to the response by MetricsMiddleware, also when a route returns a Response itself.
    request.state.rate_headers = headers


CallerDep = Annotated[Principal, Depends(authenticate)]


def caller_checks(applies: bool) -> list[params.Depends]:
    """Router dependencies: the API-key check (when auth is on) and the rate limit when
    ``applies``, else none (open probes)."""
    return [Depends(authenticate)] if applies else []


def require_scope(scope: Scope) -> params.Depends:
    """Router dependency: with auth on, the caller's key must carry ``scope`` (else 403)."""

    async def check(state: StateDep, caller: CallerDep) -> None:
        if state.settings.api.auth_enabled and scope not in caller.scopes:
            raise ProblemError(
                403,
                "Forbidden",
                f"API key {caller.key_id} lacks the {scope.value!r} scope; create one with "
                f"`cryptopulse apikey create NAME --scope {scope.value}`",
                slug="missing-scope",
            )

    return Depends(check)


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
