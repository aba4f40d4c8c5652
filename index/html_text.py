"""HTML to a stream of headings and text blocks, with the standard library's ``html.parser``.

``<h1>`` to ``<h6>`` are structure; paragraphs, lists and tables become blocks (list items as
``- item`` lines, table rows as ``cell | cell`` lines); ``script``, ``style``, ``template``,
``noscript`` and everything in ``<head>`` but the ``<title>`` are dropped. The parser is
lenient, as browsers are (unclosed ``<p>`` or ``<li>`` are fine); a document is *corrupt*
when it holds no markup at all, or ends inside a tag, a comment or a ``<script>``.
"""

from __future__ import annotations

from html.parser import HTMLParser

from index.markup import Block, Heading, clean_block

__all__ = ["HTMLStructureError", "html_blocks"]

_SKIPPED = frozenset({"script", "style", "template", "noscript", "head", "svg", "iframe"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "nav",
        "ul", "ol", "dl", "table", "blockquote", "pre", "figure", "form", "fieldset",
        "address", "details", "summary", "hr", "body",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"li", "tr", "br", "dt", "dd", "caption", "figcaption", "option"})
_CELL_TAGS = frozenset({"td", "th"})


class HTMLStructureError(ValueError):
    """The markup is broken beyond what a lenient reader accepts; the message says how."""


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[Heading | Block] = []
        self.title = ""
        self.saw_markup = False
        self._skip: list[str] = []
        self._in_title = False
        self._heading: tuple[int, list[str]] | None = None
        self._lines: list[str] = []
        self._line: list[str] = []

    # Text collection --------------------------------------------------------------------
    def _end_line(self) -> None:
        line = " ".join("".join(self._line).split())
        self._line.clear()
        if line and line != "-":
            self._lines.append(line)

    def _end_heading(self) -> None:
        if self._heading is not None:
            level, parts = self._heading
            self._heading = None
            text = clean_block(" ".join("".join(parts).split()))
            if text:
                self.items.append(Heading(level, text))

    def _end_block(self) -> None:
        # A block tag inside an unclosed heading ends the heading, as browsers do.
        self._end_heading()
        self._end_line()
        text = clean_block("\n".join(self._lines))
        self._lines.clear()
        if text:
            self.items.append(Block(text))

    # HTMLParser hooks -------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.saw_markup = True
        if tag == "title":
            self._in_title = True
        if tag in _SKIPPED:
            self._skip.append(tag)
            return
        if self._skip:
            return
        if tag in _HEADINGS:
            self._end_block()
            self._heading = (_HEADINGS[tag], [])
        elif tag in _BLOCK_TAGS:
            self._end_block()
        elif tag in _LINE_TAGS:
            self._end_line()
            if tag == "li":
                self._line.append("- ")
        elif tag in _CELL_TAGS and "".join(self._line).strip():
            self._line.append(" | ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _SKIPPED:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        self.saw_markup = True
        if tag == "title":
            self._in_title = False
        if tag in _SKIPPED:
            if tag in self._skip:
                del self._skip[len(self._skip) - 1 - self._skip[::-1].index(tag) :]
            return
        if self._skip:
            return
        if tag in _HEADINGS:
            self._end_heading()
        elif tag in _BLOCK_TAGS:
            self._end_block()
        elif tag in _LINE_TAGS:
            self._end_line()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip:
            return
        if self._heading is not None:
            self._heading[1].append(data)
        else:
            self._line.append(data)

    def handle_comment(self, data: str) -> None:
        self.saw_markup = True

    def handle_decl(self, decl: str) -> None:
        self.saw_markup = True

    def finish(self) -> None:
        leftover = self.rawdata.lstrip()
        if leftover.startswith("<"):
            msg = f"the markup ends inside an unterminated tag or comment ({leftover[:40]!r})"
            raise HTMLStructureError(msg)
        if self._skip and self._skip[-1] in {"script", "style"} and leftover:
            msg = f"a <{self._skip[-1]}> element is never closed"
            raise HTMLStructureError(msg)
        self.close()
        self._end_block()
        if not self.saw_markup:
            msg = "it holds no HTML markup at all"
            raise HTMLStructureError(msg)


def html_blocks(source: str) -> tuple[str, list[Heading | Block]]:
    """The ``<title>`` (may be empty) and the headings and blocks of an HTML document.

    Raises :class:`HTMLStructureError` when the markup is broken (see the module docstring).
    """
    extractor = _Extractor()
    extractor.feed(source)
    extractor.finish()
    return clean_block(" ".join(extractor.title.split())), extractor.items
