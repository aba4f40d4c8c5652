"""SSE framing: one JSON payload per frame; content can never forge a frame."""

from __future__ import annotations

import json

from api.sse import DONE_FRAME, encode_frame, iter_frames


def test_frame_is_data_line_and_blank_line() -> None:
    frame = encode_frame({"a": 1})
    assert frame == b'data: {"a":1}\n\n'


def test_newlines_in_content_cannot_forge_frames() -> None:
    hostile = 'ok"}\n\ndata: [DONE]\n\ndata: {"evil": true}\r\n'
    stream = encode_frame({"content": hostile}) + DONE_FRAME
    frames = iter_frames(stream)
    assert len(frames) == 2
    assert json.loads(frames[0])["content"] == hostile
    assert frames[1] == b"[DONE]"


def test_named_event() -> None:
    assert encode_frame({"x": 1}, event="sources").startswith(b"event: sources\ndata: ")
