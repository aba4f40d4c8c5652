"""PDF to text with ``pypdf``, and that text to a stream of headings and blocks.

A PDF is read once, at upload (:func:`read_pdf`), into a small plain-text form that is kept
as the document's text and parsed again on every re-index (:func:`pdf_blocks`):

* pages are separated by a form feed (``\\f``); a page break is a paragraph break;
* within a page, lines are kept as the PDF lays them out; blank lines separate paragraphs;
* the PDF's outline (bookmarks), when it has one, gives the headings: a bookmark at depth
  ``d`` is a line of ``d + 2`` ``#`` signs, a space and its title (level 2 and deeper: the
  document title comes from the PDF's metadata, not from a bookmark). It is placed where
  its title appears as a line of its target page (that line then *is* the heading), else
  at the top of the page's remaining text. A PDF without an outline has no headings:
  nothing is guessed;
* a page line that itself starts with ``#`` (after any backslashes) is escaped with one more
  leading backslash, which :func:`pdf_blocks` removes again.

Errors are this module's own (:class:`PDFError` and subclasses, ``ValueError``s): pypdf
raises its own and built-in exception types on malformed input, and none of them escapes.
Text recognition (OCR) is not done: a PDF of scanned pages raises :class:`PDFWithoutText`.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from index.markup import Block, Heading, clean_block

__all__ = [
    "EncryptedPDF",
    "PDFError",
    "PDFText",
    "PDFWithoutText",
    "UnreadablePDF",
    "pdf_blocks",
    "read_pdf",
]

_log = logging.getLogger("enclave.index")
_PAGE_BREAK = "\f"
_HEADING_LINE = re.compile(r"^(#{1,6}) (.+)$")
_ESCAPED = re.compile(r"^\\+#")
_NEEDS_ESCAPE = re.compile(r"^\\*#")
# Control characters pypdf can yield for unmapped glyphs (tab and newline are kept).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MAX_LEVEL = 6
_EOF_WINDOW = 1024
# Metadata titles that name the producing file or say nothing are not titles.
_JUNK_TITLE = re.compile(r"(?i)^(untitled|.*\.(docx?|pdf|pptx?|xlsx?|odt|rtf|txt|tex))$")


class PDFError(ValueError):
    """The PDF cannot be indexed; the message says why."""


class UnreadablePDF(PDFError):
    """The bytes are not a PDF that can be read (corrupt, truncated, not a PDF at all)."""


class EncryptedPDF(PDFError):
    """The PDF is password-protected (it does not open with an empty password)."""


class PDFWithoutText(PDFError):
    """The PDF has no extractable text (scanned pages, images only, or no pages)."""


@dataclass(frozen=True, slots=True)
class PDFText:
    """What :func:`read_pdf` found: the text form above, the metadata title, page count."""

    text: str
    title: str
    pages: int
    headings: int


@dataclass(frozen=True, slots=True)
class _Bookmark:
    page: int
    level: int
    title: str


def _key(line: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", line).split()).casefold()


def _page_text(raw: str) -> list[str]:
    text = _CONTROL.sub(" ", raw.replace(_PAGE_BREAK, "\n\n"))
    return [line.rstrip() for line in text.splitlines()]


def _bookmarks(reader: Any) -> list[_Bookmark]:
    """Outline entries with a page in this document, in outline order."""
    found: list[_Bookmark] = []

    def walk(items: Sequence[Any], depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            page = reader.get_destination_page_number(item)
            if title and page is not None and page >= 0:
                found.append(_Bookmark(page, min(depth + 2, _MAX_LEVEL), title))

    try:
        walk(reader.outline, 0)
    except Exception as exc:  # a broken outline costs the headings, not the document
        _log.warning("ignoring an unreadable PDF outline: %s: %s", type(exc).__name__, exc)
        return []
    return found


def _place(lines: list[str], bookmarks: list[_Bookmark]) -> list[str]:
    """The page's lines with its bookmarks as heading lines (see the module docstring)."""
    out: list[str] = []
    cursor = 0
    keys = [_key(line) for line in lines]
    for mark in bookmarks:
        wanted = _key(mark.title)
        at = next((i for i in range(cursor, len(lines)) if keys[i] == wanted), None)
        heading = "#" * mark.level + " " + mark.title
        if at is None:
            out += ["", heading, ""]
            continue
        out += [*lines[cursor:at], "", heading, ""]
        cursor = at + 1
    return out + lines[cursor:]


def _escape(line: str) -> str:
    return "\\" + line if _NEEDS_ESCAPE.match(line) else line


def _title(reader: Any) -> str:
    try:
        metadata = reader.metadata
        raw = metadata.title if metadata is not None else None
    except Exception:  # a broken info dictionary costs the title only
        return ""
    title = " ".join(str(raw or "").split())
    return "" if _JUNK_TITLE.match(title) else clean_block(title)


def _open(pypdf: Any, data: bytes) -> Any:
    reader = pypdf.PdfReader(io.BytesIO(data))
    # Many PDFs are encrypted with an empty user password only to restrict printing or
    # copying; those open for reading. Anything else needs the password we do not have.
    if reader.is_encrypted and not reader.decrypt(""):
        msg = "it is password-protected; upload a copy without a password"
        raise EncryptedPDF(msg)
    return reader


def read_pdf(data: bytes) -> PDFText:
    """The text form of a PDF (module docstring) and its metadata title.

    Raises :class:`UnreadablePDF`, :class:`EncryptedPDF` or :class:`PDFWithoutText`.
    """
    if not data.lstrip().startswith(b"%PDF-"):
        msg = "it does not start with %PDF-"
        raise UnreadablePDF(msg)
    # Imported here (a dependency, but a heavy one that only PDFs need), outside the ``try``
    # below: a broken install must fail loudly, not pass for a corrupt document.
    import pypdf

    try:
        reader = _open(pypdf, data)
        pages = [_page_text(page.extract_text() or "") for page in reader.pages]
    except PDFError:
        raise
    except Exception as exc:  # pypdf raises many built-in types on malformed input
        # The reader's own words (an exception name, "startxref not found") mean nothing to
        # the person uploading; they stay on the chained exception for the operator.
        if b"%%EOF" not in data[-_EOF_WINDOW:]:
            reason = (
                "the file looks truncated: it ends before a complete PDF does; upload the "
                "whole file again"
            )
        else:
            reason = (
                "its contents are damaged and cannot be read; open it in a PDF viewer, save "
                "or export it again as PDF, and upload that copy"
            )
        raise UnreadablePDF(reason) from exc
    if not pages:
        msg = "it has no pages"
        raise PDFWithoutText(msg)
    if not any(line.strip() for lines in pages for line in lines):
        msg = (
            f"none of its {len(pages)} page(s) holds extractable text; it looks like scanned "
            "images, and text recognition (OCR) is not done here: upload a PDF with a text "
            "layer, or the text itself"
        )
        raise PDFWithoutText(msg)
    by_page: dict[int, list[_Bookmark]] = {}
    bookmarks = _bookmarks(reader)
    for mark in bookmarks:
        by_page.setdefault(mark.page, []).append(mark)
    texts: list[str] = []
    for number, lines in enumerate(pages):
        escaped = [_escape(line) for line in lines]
        texts.append("\n".join(_place(escaped, by_page.get(number, []))).strip("\n"))
    headings = sum(len(by_page.get(n, [])) for n in range(len(pages)))
    return PDFText(_PAGE_BREAK.join(texts), _title(reader), len(pages), headings)


def pdf_blocks(text: str) -> Iterator[Heading | Block]:
    """Headings and blocks of the text form :func:`read_pdf` writes (module docstring)."""
    for page in text.split(_PAGE_BREAK):
        paragraph: list[str] = []
        # A trailing empty line flushes the page's last paragraph: a page break ends a block.
        for line in [*page.splitlines(), ""]:
            heading = _HEADING_LINE.match(line)
            if heading is None and line.strip():
                paragraph.append(line[1:] if _ESCAPED.match(line) else line)
                continue
            block = clean_block("\n".join(paragraph))
            paragraph.clear()
            if block:
                yield Block(block)
            if heading is not None and (title := clean_block(heading.group(2))):
                yield Heading(len(heading.group(1)), title)
