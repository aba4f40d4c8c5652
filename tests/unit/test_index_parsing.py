"""Document readers: structure, offsets and typed errors for every supported format."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pypdf
import pytest

from core.errors import InvalidRequest
from index.base import Document
from index.chunking import ChunkingOptions, chunk_document
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


# PDF ------------------------------------------------------------------------------------------
# PDFs are written here, byte by byte with a correct xref table, so that no binary fixture is
# committed and each test shows exactly what its PDF holds.
Outline = Sequence[tuple[str, int, "Outline"]]  # (title, page index, children)


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def make_pdf(
    pages: Sequence[Sequence[str] | None],
    *,
    outline: Outline = (),
    title: str | None = None,
) -> bytes:
    """A PDF with one page per entry: lines of Helvetica text, or (None) one grey image."""
    objects: dict[int, bytes] = {1: b"", 2: b""}  # catalog and page tree, written last
    objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"

    def reserve() -> int:
        number = max(objects) + 1
        objects[number] = b""
        return number

    image = b"<< /Type /XObject /Subtype /Image /Width 1 /Height 1 /ColorSpace /DeviceGray"
    objects[4] = image + b" /BitsPerComponent 8 /Length 1 >>\nstream\n\x80\nendstream"
    page_ids: list[int] = []
    for lines in pages:
        page_id, content_id = reserve(), reserve()
        if lines is None:
            content = b"q 100 0 0 100 72 600 cm /Im1 Do Q"
        else:
            shown = b" ".join(_pdf_string(line) + b" Tj T*" for line in lines)
            content = b"BT /F1 12 Tf 14 TL 72 720 Td " + shown + b" ET"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >> >>" % content_id
        )
        objects[content_id] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)
        page_ids.append(page_id)
    kids = b" ".join(b"%d 0 R" % i for i in page_ids)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    catalog = b"<< /Type /Catalog /Pages 2 0 R"

    def add_outline(items: Outline, parent: int) -> tuple[int, int]:
        ids = [reserve() for _ in items]
        for n, ((text, page, children), own) in enumerate(zip(items, ids, strict=True)):
            links = b"/Parent %d 0 R" % parent
            links += b" /Prev %d 0 R" % ids[n - 1] if n else b""
            links += b" /Next %d 0 R" % ids[n + 1] if n + 1 < len(ids) else b""
            if children:
                first, last = add_outline(children, own)
                links += b" /First %d 0 R /Last %d 0 R /Count %d" % (first, last, len(children))
            dest = b"/Dest [%d 0 R /Fit]" % page_ids[page]
            objects[own] = b"<< /Title " + _pdf_string(text) + b" " + links + b" " + dest + b" >>"
        return ids[0], ids[-1]

    if outline:
        root = reserve()
        first, last = add_outline(outline, root)
        objects[root] = b"<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count %d >>" % (
            first,
            last,
            len(outline),
        )
        catalog += b" /Outlines %d 0 R" % root
    objects[1] = catalog + b" >>"
    info = b""
    if title is not None:
        info_id = reserve()
        objects[info_id] = b"<< /Title " + _pdf_string(title) + b" >>"
        info = b" /Info %d 0 R" % info_id
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    count = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    for number in range(1, count):
        out += b"%010d 00000 n \n" % offsets[number]
    trailer = b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n"
    out += trailer % (count, info, xref)
    return bytes(out)


def pdf_document(data: bytes, doc_id: str = "policy") -> Document:
    return document_from_bytes(data, doc_id=doc_id, media_type=PDF, source=f"{doc_id}.pdf")


PAGE_ONE = [
    "Remote Work Policy",
    "Staff may work remotely up to three days a week.",
    "Managers approve the schedule in advance.",
    "Equipment",
    "The company lends a laptop and a headset.",
]
PAGE_TWO = ["Security", "Use the VPN on every public network.", "Lock the screen when away."]


def test_pdf_pages_become_blocks_and_chunks_with_exact_offsets() -> None:
    document = pdf_document(make_pdf([PAGE_ONE, PAGE_TWO], title="Remote Work"))
    assert document.title == "Remote Work"  # from the PDF's metadata
    parsed = parse_document(document)
    # No outline: no headings are guessed; the page break is a paragraph break.
    assert [s.heading_path for s in parsed.sections] == [()]
    assert parsed.text == "\n".join(PAGE_ONE) + "\n\n" + "\n".join(PAGE_TWO)
    assert_offsets(parsed)
    options = ChunkingOptions(target_words=12, max_words=20, overlap_words=3)
    chunks = chunk_document("policy", parsed, options)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert parsed.text[chunk.start : chunk.end] == chunk.text
    assert any("VPN" in chunk.text for chunk in chunks)
    assert all(chunk.title == "Remote Work" for chunk in chunks)


def test_pdf_without_a_usable_metadata_title_is_titled_by_its_id() -> None:
    assert pdf_document(make_pdf([PAGE_TWO]), doc_id="vpn").title == "vpn"
    junk = pdf_document(make_pdf([PAGE_TWO], title="draft3.docx"), doc_id="vpn")
    assert junk.title == "vpn"


def test_pdf_outline_gives_the_headings() -> None:
    outline: Outline = [
        ("Remote Work Policy", 0, [("Equipment", 0, [])]),
        ("Security", 1, [("Travel", 1, [])]),  # no "Travel" line: heads the rest of its page
    ]
    parsed = parse_document(pdf_document(make_pdf([PAGE_ONE, PAGE_TWO], outline=outline)))
    sections = {s.heading_path: s.text for s in parsed.sections}
    assert sections == {
        ("Remote Work Policy",): (
            "Staff may work remotely up to three days a week.\n"
            "Managers approve the schedule in advance."
        ),
        ("Remote Work Policy", "Equipment"): "The company lends a laptop and a headset.",
        ("Security", "Travel"): "Use the VPN on every public network.\nLock the screen when away.",
    }
    assert parsed.title == "policy"  # the id: bookmarks are sections, never the title
    assert_offsets(parsed)


def test_pdf_lines_that_look_like_headings_stay_text() -> None:
    lines = ["# not a heading", "\\# nor this", "## Budget 2026 (draft)"]
    parsed = parse_document(pdf_document(make_pdf([lines])))
    assert [s.heading_path for s in parsed.sections] == [()]
    assert parsed.text == "\n".join(lines)
    assert_offsets(parsed)


def test_pdf_that_is_not_a_pdf_is_corrupt() -> None:
    with pytest.raises(CorruptDocument, match="%PDF-") as caught:
        pdf_document(b"<html>", doc_id="scan")
    assert caught.value.detail.startswith("scan.pdf is not a readable PDF: ")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:40], "truncated"),
        (lambda data: b"%PDF-1.4\n" + bytes(range(256)) * 4, "truncated"),
        (lambda data: data.replace(b"xref", b"xxxx").replace(b" obj", b" jbo"), "damaged"),
    ],
    ids=["half", "header-only", "garbage", "mangled-objects"],
)
def test_corrupt_or_truncated_pdf_is_a_typed_400(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    data = damage(make_pdf([PAGE_ONE, PAGE_TWO]))
    with pytest.raises(CorruptDocument) as caught:
        pdf_document(data)
    assert caught.value.detail.startswith("policy.pdf is not a readable PDF: ")
    assert reason in caught.value.detail
    # In the user's words: no reader's exception name or jargon reaches them.
    assert not re.search(r"[A-Z][a-z]+Error|startxref|Stream has ended", caught.value.detail)
    assert caught.value.status_code == 400
    assert caught.value.extra == {"source": "policy.pdf", "media_type": PDF}
    assert type(caught.value.__cause__).__module__ == "index.pdf_text"  # no pypdf type


def _encrypted(data: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_password_protected_pdf_says_so() -> None:
    data = _encrypted(make_pdf([PAGE_ONE]), user_password="open-sesame")
    assert b"/Encrypt" in data
    with pytest.raises(UnsupportedDocument, match="password-protected") as caught:
        pdf_document(data)
    assert caught.value.status_code == 415
    assert caught.value.extra["reason"] == "password-protected"


def test_pdf_encrypted_without_a_user_password_is_read() -> None:
    # Owner-password-only encryption (printing/copying restrictions) opens for reading.
    parsed = parse_document(pdf_document(_encrypted(make_pdf([PAGE_TWO]), user_password="")))
    assert "Use the VPN on every public network." in parsed.text


@pytest.mark.parametrize(
    "pages", [[None], [None, None], [[], None]], ids=["image", "images", "blank-and-image"]
)
def test_pdf_without_text_is_empty_and_says_there_is_no_ocr(
    pages: list[Sequence[str] | None],
) -> None:
    with pytest.raises(EmptyDocument) as caught:
        pdf_document(make_pdf(pages), doc_id="scan")
    detail = caught.value.detail
    assert detail.startswith("scan.pdf: the PDF holds no text to index: ")
    assert "scanned images" in detail
    assert "OCR" in detail
    assert caught.value.status_code == 400


def test_pdf_files_are_read_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "remote-work.pdf"
    path.write_bytes(make_pdf([PAGE_ONE], title="Remote Work"))
    document = read_document(path)
    assert (document.doc_id, document.title, document.media_type) == (
        "remote-work",
        "Remote Work",
        PDF,
    )


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


@pytest.mark.parametrize(
    "text",
    ["hello world text\n", "one long line " * 700_000],
    ids=["one-paragraph", "9.8-MB-single-line"],
)
def test_one_paragraph_text_file_is_indexed_like_the_same_bytes_as_markdown(text: str) -> None:
    as_text = parse(text, PLAIN_TEXT)
    as_markdown = parse(text, MARKDOWN)
    assert as_text.text == as_markdown.text == text.strip()
    assert [s.text for s in as_text.sections] == [text.strip()]
    assert_offsets(as_text)


def test_text_title_still_heads_the_paragraphs_after_it() -> None:
    parsed = parse("Travel Notes\n\nBook the train early.\n", PLAIN_TEXT)
    assert [(s.heading_path, s.text) for s in parsed.sections] == [
        (("Travel Notes",), "Book the train early.")
    ]
