"""Server-sent-event framing for OpenAI-style streams.

Payloads are JSON encoded by msgspec, which escapes every control character, so text that
contains newlines can never end a frame early or forge an event.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["DONE_FRAME", "encode_frame", "iter_frames"]

DONE_FRAME = b"data: [DONE]\n\n"
_encoder = msgspec.json.Encoder()


def encode_frame(payload: Any, *, event: str | None = None) -> bytes:
    """One ``data:`` frame holding ``payload`` as JSON (optionally a named event)."""
    data = _encoder.encode(payload)
    if b"\n" in data or b"\r" in data:  # pragma: no cover - msgspec never emits raw newlines
        msg = "JSON payload contains a raw newline"
        raise ValueError(msg)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


def iter_frames(stream: bytes) -> list[bytes]:
    """Split a complete SSE byte stream into the data of each frame (for tests and tools)."""
    frames = []
    for block in stream.split(b"\n\n"):
        data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
        if data:
            frames.append(b"\n".join(data))
    return frames
