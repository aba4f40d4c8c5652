"""Document readers: structure, offsets and typed errors for every supported format."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from core.errors import InvalidRequest
from index.base import Document
from index.errors import CorruptDocument, DocumentError, EmptyDocument, UnsupportedDocument
from index.parsing import (
    HTML,
    MARKDOWN,
    PDF,
    PLAIN_TEXT,
    ParsedDocument,
    document_from_bytes,
    parse_document,
    read_document,
)

HANDBOOK = Path(__file__).resolve().parents[2] / "index" / "samples" / "handbook"


def parse(text: str, media_type: str, doc_id: str = "doc") -> ParsedDocument:
    return parse_document(
        document_from_bytes(
            text.encode(), doc_id=doc_id, media_type=media_type, source=f"{doc_id}.x"
        )
    )


def assert_offsets(parsed: ParsedDocument) -> None:
    for section in parsed.sections:
        assert parsed.text[section.start : section.end] == section.text


MARKDOWN_DOC = """# Travel Guide

Intro with **bold**, *emphasis*, `code` and a [link](https://example.invalid/x).

## Booking

Use Waypoint.

### Hotels

| City | Cap |
|---|---:|
| Lisbon | 160 |

```
# not a heading
keep   this
```

## Contacts
Write to travel@northwind.example.
"""


def test_markdown_headings_become_paths_and_markup_is_dropped() -> None:
    parsed = parse(MARKDOWN_DOC, MARKDOWN)
    assert parsed.title == "Travel Guide"
    paths = [s.heading_path for s in parsed.sections]
    assert paths == [
        ("Travel Guide",),
        ("Travel Guide", "Booking"),
        ("Travel Guide", "Booking", "Hotels"),
        ("Travel Guide", "Contacts"),
    ]
    intro, _, hotels, contacts = parsed.sections
    assert intro.text == "Intro with bold, emphasis, code and a link."
    assert "City | Cap\nLisbon | 160" in hotels.text
    assert "---" not in hotels.text
    assert "# not a heading\nkeep   this" in hotels.text  # fenced code is verbatim
    assert contacts.text == "Write to travel@northwind.example."
    assert_offsets(parsed)


def test_markdown_setext_headings() -> None:
    parsed = parse("Title\n=====\n\nBody one.\n\nPart\n----\n\nBody two.\n", MARKDOWN)
    assert parsed.title == "Title"
    assert [s.heading_path for s in parsed.sections] == [("Title",), ("Title", "Part")]


def test_plain_text_title_and_title_case_headings() -> None:
    text = (
        "Printing At The Office\n\n"
        "Intro paragraph that explains things.\nIt wraps over two lines.\n\n"
        "Where The Printers Are\n\n"
        "Floor two, next to the kitchen.\n\n"
        "This short line ends with a period.\n\n"
        "not a heading in lower case\n\n"
        "Scanning\n\n"
        "Tap your badge and choose Scan to Me.\n"
    )
    parsed = parse(text, PLAIN_TEXT)
    assert parsed.title == "Printing At The Office"
    sections = {s.heading_path[-1]: s.text for s in parsed.sections}
    assert list(sections) == ["Printing At The Office", "Where The Printers Are", "Scanning"]
    assert "This short line ends with a period." in sections["Where The Printers Are"]
    assert "not a heading in lower case" in sections["Where The Printers Are"]
    assert_offsets(parsed)


HTML_DOC = """<!DOCTYPE html>
<html><head><title>Guest Wi-Fi</title><style>p { color: red }</style>
<script>var secret = "dropped";</script></head>
<body>
<h1>Guest Wi-Fi</h1>
<p>Guests use <b>NW-Guest</b> &amp; need a sponsor.</p>
<h2>Networks</h2>
<table><tr><th>Name</th><th>Use</th></tr><tr><td>NW-Corp</td><td>staff</td></tr></table>
<h3>Limits</h3>
<ul><li>One week</li><li>Five devices</li></ul>
<script>document.write("also dropped")</script>
</body></html>
"""


def test_html_structure_and_dropped_scripts() -> None:
    parsed = parse(HTML_DOC, HTML)
    assert parsed.title == "Guest Wi-Fi"
    assert [s.heading_path for s in parsed.sections] == [
        ("Guest Wi-Fi",),
        ("Guest Wi-Fi", "Networks"),
        ("Guest Wi-Fi", "Networks", "Limits"),
    ]
    intro, networks, limits = parsed.sections
    assert intro.text == "Guests use NW-Guest & need a sponsor."
    assert networks.text == "Name | Use\nNW-Corp | staff"
    assert limits.text == "- One week\n- Five devices"
    assert "dropped" not in parsed.text
    assert "color" not in parsed.text
    assert_offsets(parsed)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'<html><body><p>Fine so far</p><div class="trunc', "unterminated tag"),
        (b"<p>Text</p><!-- a comment that never ends", "unterminated tag or comment"),
        (b"<p>Text</p><script>var x = 1;", "never closed"),
        (b"Just words, no markup at all.", "no HTML markup"),
        (b"<p>\xff\xfe broken bytes</p>", "not UTF-8"),
        (b"<p>a</p>\x00\x01\x02", "binary data"),
    ],
)
def test_corrupt_html_is_a_typed_error_naming_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptDocument) as caught:
        document_from_bytes(data, doc_id="broken", media_type=HTML, source="broken.html")
    assert reason in caught.value.detail
    assert "broken.html" in caught.value.detail
    assert caught.value.extra["source"] == "broken.html"
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.status_code == 400


def test_unknown_file_type_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "budget.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(UnsupportedDocument) as caught:
        read_document(path)
    assert ".xlsx" in caught.value.detail
    assert ".md" in caught.value.detail  # says what is supported
    assert caught.value.status_code == 415
    assert isinstance(caught.value, InvalidRequest)


def test_unknown_media_type_is_unsupported() -> None:
    with pytest.raises(UnsupportedDocument, match="application/msword"):
        document_from_bytes(b"x", doc_id="d", media_type="application/msword", source="d.doc")
    document = Document("d", "t", "d.doc", "application/msword", "x")
    with pytest.raises(UnsupportedDocument):
        parse_document(document)


def test_pdf_without_pypdf_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` fail
    data = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
    with pytest.raises(UnsupportedDocument, match="pypdf") as caught:
        document_from_bytes(data, doc_id="scan", media_type=PDF, source="scan.pdf")
    assert caught.value.extra["media_type"] == PDF


def test_pdf_that_is_not_a_pdf_is_corrupt() -> None:
    with pytest.raises(CorruptDocument, match="%PDF-"):
        document_from_bytes(b"<html>", doc_id="scan", media_type=PDF, source="scan.pdf")


def test_document_without_text_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        parse("# Only A Title\n\n## And A Heading\n", MARKDOWN)
    with pytest.raises(EmptyDocument):
        parse("<html><body><script>x()</script></body></html>", HTML)


@pytest.mark.parametrize("doc_id", ["", "has space", "../etc", "-leading", "x" * 129])
def test_bad_document_ids_are_refused(doc_id: str) -> None:
    with pytest.raises(DocumentError, match="not valid"):
        document_from_bytes(b"text", doc_id=doc_id, media_type=PLAIN_TEXT, source="a.txt")


def test_read_document_uses_the_file_stem_and_the_own_title(tmp_path: Path) -> None:
    path = tmp_path / "it-vpn.md"
    path.write_text("\ufeff# VPN Access\n\nConnect first.\n", encoding="utf-8")
    document = read_document(path)
    assert (document.doc_id, document.title, document.source) == (
        "it-vpn",
        "VPN Access",
        "it-vpn.md",
    )
    assert document.media_type == MARKDOWN


def test_every_sample_document_parses_with_structure() -> None:
    files = sorted(HANDBOOK.iterdir())
    assert len(files) == 32
    for path in files:
        document = read_document(path)
        parsed = parse_document(document)
        assert document.title != document.doc_id, path.name
        assert len(parsed.sections) >= 3, path.name
        assert all(s.heading_path[0] == parsed.title for s in parsed.sections), path.name
        assert "<" not in parsed.text or path.suffix != ".html", path.name
        assert_offsets(parsed)
