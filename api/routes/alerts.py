"""/v1/alerts/subscriptions: who gets which alerts, at which webhook.

A subscription belongs to the caller's API key (with auth off, to the one local owner);
with auth on the key needs the ``alerts`` scope, since a subscription makes the server
send requests to a URL of the caller's choosing. Creating one returns its signing secret
once: the alerting service signs every delivery with it (HMAC-SHA256, see
docs/alerts.md) and the API never shows it again. Subscriptions live in Redis
(``RedisKeys.alert_subscription``); Redis away is a 503 with Retry-After (the app's
handler), like every other route.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Annotated, Any, get_args
from urllib.parse import urlsplit

import anyio
import structlog
from fastapi import APIRouter, Path, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Send
from starlette.types import Scope as StarletteScope

from api.deps import COIN_ID_PATTERN, CallerDep, StateDep, require_scope
from api.openapi import AUTHED, errors
from api.problems import ProblemError
from api.scopes import Scope
from api.state import AppState
from core.egress import destination_problem
from schemas.events import MAX_URL_CHARS, AlertKind, AlertSubscription
from schemas.redis_keys import RedisKeys


class _PathMethodsRoute(APIRoute):
    """A route whose 405 lists every method of its path. Starlette answers a method that no
    route of a path takes with the ``Allow`` of the first route only (here POST, without the
    GET beside it), which misleads clients and breaks the OpenAPI contract."""

    async def handle(self, scope: StarletteScope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            methods = {
                method
                for route in router.routes
                if isinstance(route, APIRoute) and self.path.endswith(route.path)
                for method in route.methods or ()
            }
            raise StarletteHTTPException(405, headers={"Allow": ", ".join(sorted(methods | self.methods))})
        await super().handle(scope, receive, send)


router = APIRouter(
    prefix="/alerts/subscriptions",
    tags=["alerts"],
    dependencies=[require_scope(Scope.ALERTS)],
    route_class=_PathMethodsRoute,
)
log = structlog.get_logger(__name__)

LOCAL_OWNER = "local"
"""The owner of every subscription while auth is off (one local user)."""
ALL_KINDS: list[AlertKind] = list(get_args(AlertKind))

# KEYS: record, all-ids set, owner's set; ARGV: id, JSON, cap. 0 when the owner is at the cap.
_CREATE = """
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook target, or None when it can."""
    if len(url) > MAX_URL_CHARS:
        return f"URL longer than {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 # parsing it raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'!r} is not allowed: use http or https"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not allowed: the receiver checks the signature instead"
    if any(ch.isspace() for ch in url):
        return "the URL contains whitespace"
    return None


class SubscriptionRequest(BaseModel):
    """A new subscription: which alerts, and where to send them."""

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="http(s) webhook; Slack and Discord incoming-webhook URLs work as they are",
        examples=["https://hooks.example.com/cryptopulse"],
    )
    coin: str | None = Field(
        default=None, pattern=COIN_ID_PATTERN, description="only this coin; null or absent: all alerts"
    )
    kinds: list[AlertKind] = Field(
        default_factory=lambda: list(ALL_KINDS),
        min_length=1,
        max_length=len(ALL_KINDS),
        description="alert kinds to receive (default: all)",
    )
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1e6,
        description="only alerts whose |value| (z-score, PSI, failing share) is at least this",
    )

    @field_validator("url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        problem = webhook_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("kinds")
    @classmethod
    def _unique(cls, value: list[AlertKind]) -> list[AlertKind]:
        return sorted(set(value), key=ALL_KINDS.index)


class SubscriptionOut(BaseModel):
    """A subscription as its owner sees it (never with the secret)."""

    id: str
    coin: str | None
    kinds: list[AlertKind]
    threshold: float | None
    url: str
    created: str

    @classmethod
    def of(cls, sub: AlertSubscription) -> SubscriptionOut:
        return cls(
            id=sub.id,
            coin=sub.coin,
            kinds=list(sub.kinds),
            threshold=sub.threshold,
            url=sub.url,
            created=sub.created.isoformat(),
        )


class SubscriptionCreated(BaseModel):
    subscription: SubscriptionOut
    secret: str = Field(
        description="signing secret of this subscription's deliveries; shown only now, keep it"
    )
    signature: str = Field(
        default="X-CryptoPulse-Signature: sha256=<hex HMAC-SHA256(secret, "
        '"<X-CryptoPulse-Timestamp>.<body>")>',
        description="how each delivery is signed",
    )


class SubscriptionsResponse(BaseModel):
    count: int
    subscriptions: list[SubscriptionOut]


def _owner(state: AppState, caller: Any) -> str:
    return str(caller.key_id) if state.settings.api.auth_enabled else LOCAL_OWNER


def _keys(state: AppState) -> RedisKeys:
    keys: RedisKeys = state.store.keys
    return keys


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionCreated,
    summary="Subscribe a webhook to alerts (returns its signing secret once)",
    responses=errors(*AUTHED, 403, 409, 422, 503),
)
async def create_subscription(
    body: SubscriptionRequest, state: StateDep, caller: CallerDep
) -> SubscriptionCreated:
    owner = _owner(state, caller)
    check = partial(destination_problem, allow_private=state.settings.alerting.allow_private_targets)
    refused = await anyio.to_thread.run_sync(check, body.url)  # resolving the host may block
    if refused:
        raise ProblemError(422, "Webhook target refused", refused, slug="webhook-target-refused")
    keys = _keys(state)
    sub = AlertSubscription(
        id=f"sub_{secrets.token_hex(8)}",
        owner=owner,
        coin=body.coin,
        kinds=body.kinds,
        threshold=body.threshold,
        url=body.url,
        secret="whsec_" + secrets.token_urlsafe(32),  # pragma: allowlist secret # generated, not a literal
    )
    cap = state.settings.alerting.max_subscriptions_per_key
    created = await state.redis.eval(
        _CREATE,
        3,
        keys.alert_subscription(sub.id),
        keys.alert_subscriptions(),
        keys.alert_subscriptions_of(owner),
        sub.id,
        sub.model_dump_json(),
        cap,
    )
    if not int(created):
        raise ProblemError(
            409,
            "Too many subscriptions",
            f"{owner} already has its maximum of {cap} alert subscriptions; delete one first",
            slug="too-many-subscriptions",
        )
    log.info("alert subscription created", subscription=sub.id, owner=owner, kinds=sub.kinds, coin=sub.coin)
    return SubscriptionCreated(subscription=SubscriptionOut.of(sub), secret=sub.secret)


@router.get(
    "",
    response_model=SubscriptionsResponse,
    summary="The caller's alert subscriptions",
    responses=errors(*AUTHED, 403, 503),
)
async def list_subscriptions(state: StateDep, caller: CallerDep) -> SubscriptionsResponse:
    keys = _keys(state)
    ids = sorted(
        i.decode() if isinstance(i, bytes) else str(i)
        for i in await state.redis.smembers(keys.alert_subscriptions_of(_owner(state, caller)))
    )
    raws = await state.redis.mget([keys.alert_subscription(i) for i in ids]) if ids else []
    subs = []
    for sid, raw in zip(ids, raws, strict=True):
        if raw is None:
            continue
        try:
            subs.append(SubscriptionOut.of(AlertSubscription.model_validate_json(raw)))
        except ValueError:
            log.error("unreadable alert subscription", subscription=sid)
    subs.sort(key=lambda s: s.created)
    return SubscriptionsResponse(count=len(subs), subscriptions=subs)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Delete one of the caller's alert subscriptions",
    responses=errors(*AUTHED, 403, 404, 422, 503),
)
async def delete_subscription(
    state: StateDep,
    caller: CallerDep,
    subscription_id: Annotated[str, Path(pattern=r"^sub_[0-9a-f]{16}$", examples=["sub_0123456789abcdef"])],
) -> Response:
    owner = _owner(state, caller)
    keys = _keys(state)
    if not await state.redis.sismember(keys.alert_subscriptions_of(owner), subscription_id):
        raise ProblemError(
            404,
            "Unknown subscription",
            f"no subscription {subscription_id} of {owner}",
            slug="unknown-subscription",
        )
    async with state.redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.alert_subscription(subscription_id))
        pipe.srem(keys.alert_subscriptions(), subscription_id)
        pipe.srem(keys.alert_subscriptions_of(owner), subscription_id)
        await pipe.execute()
    log.info("alert subscription deleted", subscription=subscription_id, owner=owner)
    return Response(status_code=204)
