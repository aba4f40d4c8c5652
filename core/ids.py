"""Identifiers: request ids that are safe to echo back and to log."""

from __future__ import annotations

import re
import secrets

__all__ = ["is_valid_request_id", "new_request_id"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def new_request_id() -> str:
    """A fresh, unguessable request id (``req_`` + 24 hex characters)."""
    return f"req_{secrets.token_hex(12)}"


def is_valid_request_id(value: str) -> bool:
    """Whether a client-supplied request id is safe to adopt (no spaces, no CR/LF, bounded)."""
    return bool(_REQUEST_ID.fullmatch(value))
