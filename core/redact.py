"""Credentials inside URLs, masked before they are logged or printed.

Settings carry DSNs with their passwords (``redis://:pw@host``, an MLflow
``https://user:pw@host``); a message that names the server it failed to reach must not
leak them to a terminal, a log file or a log shipper. :func:`mask_url_credentials` is the
one place that knows how; :func:`redact_credentials` applies it to every structlog event.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

MASK = "***"

# scheme://userinfo@ ; greedy up to the last "@" of the authority, so an unencoded "@"
# inside a password is masked too.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")
_PLAIN = (str, int, float, bool, type(None))
_TRACEBACK_KEYS = ("exc_info", "stack_info")


def _mask(match: re.Match[str]) -> str:
    user, has_password, _ = match["userinfo"].partition(":")
    # A user name alone can be a token (https://TOKEN@host): mask all of it.
    return f"{match['scheme']}{user}:{MASK}@" if has_password else f"{match['scheme']}{MASK}@"


def mask_url_credentials(text: str) -> str:
    """``text`` with the password (or a bare token) of every ``scheme://user:pw@`` masked."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(_mask, text)


def redact_credentials(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: masks URL credentials in every value of a log event.

    Strings are masked in place; other objects (exceptions, paths) are replaced by their
    masked text only when that text holds credentials. Keys with a leading underscore and
    ``exc_info`` belong to structlog and the logging bridge and are left alone.
    """
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = mask_url_credentials(value)
        elif not isinstance(value, _PLAIN) and not key.startswith("_") and key not in _TRACEBACK_KEYS:
            text = str(value)
            masked = mask_url_credentials(text)
            if masked != text:
                event_dict[key] = masked
    return event_dict
