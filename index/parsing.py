"""Read documents and turn them into normalised text with a heading structure.

Supported types, by file suffix or media type:

==================  ==================  ====================================================
suffix              media type          reader
==================  ==================  ====================================================
.md .markdown       text/markdown       ``index.markup.markdown_blocks``
.txt .text          text/plain          ``index.markup.text_blocks``
.html .htm          text/html           ``index.html_text.html_blocks`` (stdlib html.parser)
.pdf                application/pdf     ``index.pdf_text`` (pypdf): pages, outline headings
==================  ==================  ====================================================

The *normalised text* of a document is its blocks and headings joined by blank lines, each
block NFC-normalised with single spaces between words. Section offsets (and so chunk
offsets) index into that text.

A PDF is read once, at upload: ``Document.text`` then holds the text of its pages (a page
break is a paragraph break) with its outline's bookmarks as headings, in the form
``index.pdf_text`` describes; a PDF without an outline has no headings. A PDF that is not
readable is a ``CorruptDocument``, a password-protected one an ``UnsupportedDocument``, one
without extractable text (scanned pages; there is no OCR) an ``EmptyDocument``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from index.base import Document
from index.errors import CorruptDocument, DocumentError, EmptyDocument, UnsupportedDocument
from index.html_text import HTMLStructureError, html_blocks
from index.markup import Block, Heading, markdown_blocks, text_blocks
from index.pdf_text import (
    EncryptedPDF,
    PDFError,
    PDFText,
    PDFWithoutText,
    pdf_blocks,
    read_pdf,
)

__all__ = [
    "HTML",
    "MARKDOWN",
    "MEDIA_TYPES",
    "PDF",
    "PLAIN_TEXT",
    "ParsedDocument",
    "Section",
    "check_doc_id",
    "document_from_bytes",
    "media_type_of",
    "parse_document",
    "read_document",
]

MARKDOWN = "text/markdown"
PLAIN_TEXT = "text/plain"
HTML = "text/html"
PDF = "application/pdf"
MEDIA_TYPES: dict[str, str] = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".txt": PLAIN_TEXT,
    ".text": PLAIN_TEXT,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
}
_DOC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUPPORTED = ", ".join(sorted(set(MEDIA_TYPES.values())))


@dataclass(frozen=True, slots=True)
class Section:
    """Text under one heading path; ``text == normalised[start:end]``."""

    heading_path: tuple[str, ...]
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A document's title, normalised text and its sections, in order."""

    title: str
    text: str
    sections: tuple[Section, ...]


def check_doc_id(doc_id: str, *, source: str) -> str:
    """The id, if it is a slug (letters, digits, ``.``, ``_``, ``-``; at most 128)."""
    if not _DOC_ID.match(doc_id):
        msg = (
            f"Document id {doc_id!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
        raise DocumentError(msg, source=source)
    return doc_id


def media_type_of(path: Path) -> str:
    """The media type a file's suffix says it holds."""
    media_type = MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        msg = (
            f"{path.name}: files of type {path.suffix or '(no suffix)'!r} cannot be indexed; "
            f"supported: {', '.join(sorted(MEDIA_TYPES))}."
        )
        raise UnsupportedDocument(msg, source=path.name)
    return media_type


def _pdf_text(data: bytes, source: str) -> PDFText:
    try:
        return read_pdf(data)
    except EncryptedPDF as exc:
        msg = f"{source}: the PDF cannot be indexed: {exc}."
        extra = {"media_type": PDF, "reason": "password-protected"}
        raise UnsupportedDocument(msg, source=source, extra=extra) from exc
    except PDFWithoutText as exc:
        msg = f"{source}: the PDF holds no text to index: {exc}."
        raise EmptyDocument(msg, source=source, extra={"media_type": PDF}) from exc
    except PDFError as exc:
        msg = f"{source} is not a readable PDF: {exc}."
        raise CorruptDocument(msg, source=source, extra={"media_type": PDF}) from exc


def document_from_bytes(
    data: bytes,
    *,
    doc_id: str,
    media_type: str,
    source: str,
    title: str | None = None,
) -> Document:
    """Decode an uploaded document and check that it parses; the title defaults to its own."""
    check_doc_id(doc_id, source=source)
    own_title = ""
    if media_type == PDF:
        pdf = _pdf_text(data, source)
        text, own_title = pdf.text, pdf.title
    elif media_type in (MARKDOWN, PLAIN_TEXT, HTML):
        if b"\x00" in data:
            msg = f"{source}: binary data where {media_type} text was expected."
            raise CorruptDocument(msg, source=source)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            msg = f"{source}: not UTF-8 text (byte {exc.start} is invalid)."
            raise CorruptDocument(msg, source=source) from exc
    else:
        msg = f"{source}: media type {media_type!r} cannot be indexed; supported: {_SUPPORTED}."
        raise UnsupportedDocument(msg, source=source)
    # A PDF's title is in its metadata, not in its text: hand it to the parse as the title.
    draft = Document(
        doc_id=doc_id, title=own_title, source=source, media_type=media_type, text=text
    )
    parsed = parse_document(draft)
    return Document(
        doc_id=doc_id,
        title=title or parsed.title or doc_id,
        source=source,
        media_type=media_type,
        text=text,
    )


def read_document(path: Path, *, doc_id: str | None = None) -> Document:
    """Read a file as a document; the id defaults to the file name without its suffix."""
    media_type = media_type_of(path)
    return document_from_bytes(
        path.read_bytes(),
        doc_id=path.stem if doc_id is None else doc_id,
        media_type=media_type,
        source=path.name,
    )


def _items(document: Document) -> tuple[str, Iterable[Heading | Block]]:
    if document.media_type == MARKDOWN:
        return "", markdown_blocks(document.text)
    if document.media_type == PLAIN_TEXT:
        return "", text_blocks(document.text)
    if document.media_type == PDF:
        return "", pdf_blocks(document.text)
    if document.media_type == HTML:
        try:
            return html_blocks(document.text)
        except HTMLStructureError as exc:
            msg = f"{document.source}: the HTML cannot be read: {exc}."
            raise CorruptDocument(msg, source=document.source) from exc
    msg = (
        f"{document.source}: media type {document.media_type!r} cannot be indexed; "
        f"supported: {_SUPPORTED}."
    )
    raise UnsupportedDocument(msg, source=document.source)


def parse_document(document: Document) -> ParsedDocument:
    """Normalised text and sections of a document (see the module docstring)."""
    head_title, items = _items(document)
    parts: list[str] = []
    length = 0
    path: list[tuple[int, str]] = []
    spans: list[tuple[tuple[str, ...], int, int]] = []
    open_section: tuple[tuple[str, ...], int, int] | None = None
    first_h1 = ""

    def append(text: str) -> tuple[int, int]:
        nonlocal length
        if parts:
            parts.append("\n\n")
            length += 2
        parts.append(text)
        length += len(text)
        return length - len(text), length

    def close_section() -> None:
        nonlocal open_section
        if open_section is not None:
            spans.append(open_section)
            open_section = None

    for item in items:
        if isinstance(item, Heading):
            close_section()
            while path and path[-1][0] >= item.level:
                path.pop()
            path.append((item.level, item.text))
            if item.level == 1 and not first_h1:
                first_h1 = item.text
            append(item.text)
            continue
        start, end = append(item.text)
        heading_path = tuple(text for _, text in path)
        if open_section is not None and open_section[0] == heading_path:
            open_section = (heading_path, open_section[1], end)
        else:
            close_section()
            open_section = (heading_path, start, end)
    close_section()
    if not spans:
        msg = f"{document.source}: the document holds no text to index."
        raise EmptyDocument(msg, source=document.source)
    text = "".join(parts)
    sections = tuple(Section(path, text[start:end], start, end) for path, start, end in spans)
    title = document.title or head_title or first_h1
    return ParsedDocument(title=title, text=text, sections=sections)
