"""Where outbound requests to user-given URLs (alert webhooks) may go.

A subscriber names the URL, the service makes the request: without a check, anyone with an
API key could make the alerting service POST to the machine's own admin ports or to a cloud
metadata endpoint (server-side request forgery). Link-local (169.254.0.0/16, where cloud
metadata lives, and fe80::/10), multicast, unspecified and reserved addresses are always
refused; loopback and private networks only when ``alerting.allow_private_targets`` is off
(the default under ``CRYPTOPULSE_ENV=prod``; a local install delivers to local receivers).

Checked when a subscription is created and again before each delivery, on every address the
host resolves to (a DNS name can change its answer after it was accepted). The request itself
resolves once more, so a name whose answer flips between the check and the connection can
still slip through; deployments that hand keys to strangers should also block these ranges
at the network layer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (empty when it does not resolve)."""
    try:
        infos: list[Any] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a request may not go to ``address``, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local:
        return f"{address} is link-local (where cloud metadata services answer)"
    if not address.is_loopback and (address.is_multicast or address.is_unspecified or address.is_reserved):
        return f"{address} is not a unicast host address"  # (::1 lies in IPv6's reserved ::/8)
    if not allow_private and (address.is_loopback or not address.is_global):
        return (
            f"{address} is a loopback or private address, refused because "
            "CRYPTOPULSE_ALERTING__ALLOW_PRIVATE_TARGETS is off"
        )
    return None


def destination_problem(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> str | None:
    """Why ``url``'s host may not be sent a request, or None when it may. A name that does not
    resolve (now) is no problem here: the request itself will fail, and be retried."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return address_problem(literal, allow_private=allow_private)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for found in resolver(host, port):
        problem = address_problem(ipaddress.ip_address(found.split("%", 1)[0]), allow_private=allow_private)
        if problem:
            return f"{host} resolves to {problem}"
    return None
