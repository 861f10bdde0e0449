"""Secrets that must exist but need not be configured, created once per installation."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def persistent_secret(path: Path, *, nbytes: int = 32) -> str:
    """Read the secret at ``path``, creating a random one (mode 0600) the first time.

    Used where a known default would defeat the purpose, e.g. the salt of author-name
    hashes: a salt shipped in the code would let anyone reverse the hashes by dictionary.
    """
    try:
        return path.read_text("utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return value
