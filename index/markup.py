"""Markdown and plain text to a stream of headings and text blocks (see ``index.parsing``).

Markdown: ATX headings (``#`` to ``######``) and setext underlines are structure; fenced code
is kept verbatim; emphasis, inline code and link markup are dropped, keeping their text;
table rows become ``cell | cell`` lines and separator rows disappear.

Plain text: blocks are separated by blank lines. The first block, when it is one line, is
the title (level 1). Any later one-line block that reads like a heading (Title Case, at
most 12 words, no closing punctuation) is a level-2 heading. Nothing else is inferred.
A text of title-like lines only (one paragraph, one long line) is text, not headings.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Block", "Heading", "clean_block", "markdown_blocks", "text_blocks"]


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading at ``level`` (1 is the document title)."""

    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph, list, table or code block: text that belongs under the last heading."""

    text: str


_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_ATX_EMPTY = re.compile(r"^ {0,3}#{1,6}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(={2,}|-{2,})[ \t]*$")
_RULE = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_TABLE_SEPARATOR = re.compile(r"^ *\|?[ :\-|]*-{3,}[ :\-|]*$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_CODE = re.compile(r"`+([^`\n]*)`+")
_QUOTE = re.compile(r"^ {0,3}> ?")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_CLOSING_PUNCTUATION = ".!?,;:"


def clean_block(text: str) -> str:
    """Normalise a block: NFC, one space between words, no blank or padded lines."""
    text = unicodedata.normalize("NFC", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _inline(line: str) -> str:
    line = _IMAGE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _CODE.sub(r"\1", line)
    line = _STRONG.sub(r"\2", line)
    return _EMPHASIS.sub(r"\1", line)


def _table_row(line: str) -> str:
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return " | ".join(_inline(cell) for cell in cells if cell)


def markdown_blocks(source: str) -> Iterator[Heading | Block]:
    """Headings and blocks of a Markdown document, in order."""
    source = _HTML_COMMENT.sub("", source)
    paragraph: list[str] = []
    lines = source.splitlines()
    index = 0

    def flush() -> Iterator[Block]:
        if paragraph:
            text = clean_block("\n".join(paragraph))
            paragraph.clear()
            if text:
                yield Block(text)

    while index < len(lines):
        line = lines[index]
        index += 1
        fence = _FENCE.match(line)
        if fence:
            yield from flush()
            marker = fence.group(1)
            code: list[str] = []
            while index < len(lines) and not lines[index].lstrip().startswith(marker):
                code.append(lines[index].rstrip())
                index += 1
            index += 1  # the closing fence (or the end of the file)
            text = unicodedata.normalize("NFC", "\n".join(c for c in code if c.strip()))
            if text:
                yield Block(text)
            continue
        if not line.strip():
            yield from flush()
            continue
        heading = _ATX.match(line)
        if heading or _ATX_EMPTY.match(line):
            yield from flush()
            if heading and (title := clean_block(_inline(heading.group(2)))):
                yield Heading(len(heading.group(1)), title)
            continue
        if len(paragraph) == 1 and _SETEXT.match(line) and not line.lstrip().startswith("|"):
            title = clean_block(_inline(paragraph.pop()))
            if title:
                yield Heading(1 if line.strip().startswith("=") else 2, title)
            continue
        if _RULE.match(line):
            yield from flush()
            continue
        stripped = _QUOTE.sub("", line)
        if stripped.lstrip().startswith("|"):
            if not _TABLE_SEPARATOR.match(stripped):
                paragraph.append(_table_row(stripped))
            continue
        paragraph.append(_inline(stripped))
    yield from flush()


def _reads_like_heading(line: str) -> bool:
    words = line.split()
    if not 1 <= len(words) <= 12 or len(line) > 100 or line[-1] in _CLOSING_PUNCTUATION:
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    # Title Case: every word of four or more letters is capitalised; short ones may not be.
    return all(word[0].isupper() or word[0].isdigit() for word in words if len(word) >= 4)


def text_blocks(source: str) -> Iterator[Heading | Block]:
    """Headings and blocks of a plain-text document (rules in the module docstring)."""
    chunks = re.split(r"\n[ \t]*\n|\f", source.replace("\r\n", "\n").replace("\r", "\n"))
    items: list[Heading | Block] = []
    for raw in chunks:
        text = clean_block(raw)
        if not text:
            continue
        one_line = "\n" not in text
        if not items and one_line:
            items.append(Heading(1, text))
        elif one_line and _reads_like_heading(text):
            items.append(Heading(2, text))
        else:
            items.append(Block(text))
    if not any(isinstance(item, Block) for item in items):
        # Nothing but title-like lines (one paragraph, or a file that is one long line):
        # those lines are the text, as the same bytes are in Markdown.
        items = [Block(item.text) for item in items]
    yield from items
