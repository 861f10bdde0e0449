"""Wire schemas (pydantic models), their generated JSON Schema files, and the topic catalog."""

from schemas.events import *  # noqa: F403
from schemas.events import __all__ as _events_all

__all__ = list(_events_all)
