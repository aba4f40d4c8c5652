"""Chunking: sizes, overlap, offsets into the normalised text, headings, determinism."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import pytest

from index.base import Chunk, Document
from index.chunking import ChunkingOptions, chunk_document, embedding_text
from index.parsing import MARKDOWN, ParsedDocument, parse_document, read_document

HANDBOOK = Path(__file__).resolve().parents[2] / "index" / "samples" / "handbook"


def long_markdown(paragraphs: int = 24, words: int = 27) -> str:
    body = "\n\n".join(
        " ".join(f"p{p}w{w}" for w in range(words - 1)) + f" p{p}end." for p in range(paragraphs)
    )
    return f"# Long Policy\n\n## Rules\n\n{body}\n\n## Contacts\n\nWrite to hr@northwind.example.\n"


def parsed_markdown(text: str) -> ParsedDocument:
    return parse_document(Document("policy", "", "policy.md", MARKDOWN, text))


def word_count(text: str) -> int:
    return len(text.split())


def test_small_sections_are_one_chunk_each_with_their_heading_path() -> None:
    parsed = parsed_markdown("# Guide\n\nIntro text.\n\n## Booking\n\nUse Waypoint.\n")
    chunks = chunk_document("guide", parsed)
    assert [c.heading_path for c in chunks] == [("Guide",), ("Guide", "Booking")]
    assert [c.text for c in chunks] == ["Intro text.", "Use Waypoint."]
    assert all(c.title == "Guide" and c.doc_id == "guide" for c in chunks)


def test_offsets_and_hashes_point_at_the_normalised_text() -> None:
    parsed = parsed_markdown(long_markdown())
    for chunk in chunk_document("policy", parsed):
        assert parsed.text[chunk.start : chunk.end] == chunk.text
        assert chunk.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()


def test_long_sections_are_cut_with_overlap_and_never_mid_word() -> None:
    parsed = parsed_markdown(long_markdown())
    options = ChunkingOptions()
    rules = [c for c in chunk_document("policy", parsed, options) if c.heading_path[-1] == "Rules"]
    section = next(s for s in parsed.sections if s.heading_path[-1] == "Rules")
    assert len(rules) >= 4
    for chunk in rules:
        assert word_count(chunk.text) <= options.max_words
        assert word_count(chunk.text) >= 100
        # Whole words: the characters either side of a chunk are whitespace or the section end.
        assert chunk.start == section.start or parsed.text[chunk.start - 1].isspace()
        assert chunk.end == section.end or parsed.text[chunk.end].isspace()
    # Consecutive chunks share 20-40 words and together cover the section.
    assert rules[0].start == section.start
    assert rules[-1].end == section.end
    for left, right in itertools.pairwise(rules):
        assert right.start < left.end
        shared = word_count(parsed.text[right.start : left.end])
        assert 20 <= shared <= 40, shared
    # Cuts fall on paragraph ends here (every paragraph ends with a sentence).
    assert all(c.text.endswith("end.") for c in rules)


def test_a_paragraph_without_breaks_is_still_cut_within_limits() -> None:
    words = " ".join(f"w{i}" for i in range(1000))
    parsed = parsed_markdown(f"# T\n\n{words}\n")
    options = ChunkingOptions(target_words=120, max_words=150, overlap_words=25)
    chunks = chunk_document("t", parsed, options)
    assert len(chunks) >= 8
    covered = set()
    for chunk in chunks:
        tokens = chunk.text.split()
        assert len(tokens) <= 150
        assert all(re.fullmatch(r"w\d+", token) for token in tokens)  # no word was split
        covered.update(tokens)
    assert len(covered) == 1000
    for left, right in itertools.pairwise(chunks):
        assert word_count(parsed.text[right.start : left.end]) == 25


def test_chunks_never_cross_a_heading() -> None:
    parsed = parsed_markdown(long_markdown())
    spans = [(s.start, s.end) for s in parsed.sections]
    for chunk in chunk_document("policy", parsed):
        assert any(start <= chunk.start and chunk.end <= end for start, end in spans)
        assert "Contacts" not in chunk.text or chunk.heading_path[-1] == "Contacts"


def test_chunking_is_deterministic_and_ids_follow_content() -> None:
    first = chunk_document("policy", parsed_markdown(long_markdown()))
    again = chunk_document("policy", parsed_markdown(long_markdown()))
    assert first == again
    assert len({c.chunk_id for c in first}) == len(first)
    assert all(c.chunk_id.startswith("policy#") for c in first)
    edited = chunk_document("policy", parsed_markdown(long_markdown().replace("p0w3", "changed")))
    assert edited[0].chunk_id != first[0].chunk_id
    assert edited[-1].chunk_id == first[-1].chunk_id  # the untouched Contacts chunk


def test_embedding_text_carries_title_and_headings_once() -> None:
    chunk = Chunk(
        chunk_id="c",
        doc_id="d",
        title="VPN Access",
        heading_path=("VPN Access", "Troubleshooting"),
        start=0,
        end=5,
        text="Retry",
        content_hash="h",
    )
    assert embedding_text(chunk) == "VPN Access > Troubleshooting\nRetry"


@pytest.mark.parametrize(("target", "maximum", "overlap"), [(100, 90, 10), (50, 60, 50), (0, 1, 0)])
def test_inconsistent_options_are_refused(target: int, maximum: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunking needs"):
        ChunkingOptions(target_words=target, max_words=maximum, overlap_words=overlap)


def test_sample_handbook_chunks_stay_within_limits() -> None:
    options = ChunkingOptions()
    total = 0
    for path in sorted(HANDBOOK.iterdir()):
        document = read_document(path)
        chunks = chunk_document(document.doc_id, parse_document(document), options)
        total += len(chunks)
        assert all(word_count(c.text) <= options.max_words for c in chunks), path.name
    assert total > 32 * 4
