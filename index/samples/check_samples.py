"""Validate the sample handbook collection and its evaluation questions.

Standard library only. Run from the repository root:

    .venv/bin/python index/samples/check_samples.py

Checks:
  * every document is .md, .txt or .html, with 300-900 words of text
    (HTML is measured on its visible text, tags excluded; tokens without a
    letter or digit, such as Markdown table pipes, are not counted);
  * there are at least 3 .txt and 3 .html documents;
  * every HTML document parses with html.parser and its tags are balanced;
  * every eval line is valid JSON with id, question, relevant, answer_hint;
  * ids are unique, every `relevant` id names an existing document;
  * every document is relevant to at least one question;
  * each answer_hint appears (case-insensitively) in at least one relevant doc.
Exits with status 1 if any check fails.
"""

from __future__ import annotations

import json
import re
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC_DIR = HERE / "handbook"
EVAL_FILE = HERE / "handbook_eval.jsonl"
MIN_WORDS, MAX_WORDS = 300, 900
VOID_TAGS = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr"}


class _TextExtractor(HTMLParser):
    """Collect visible text and check that non-void tags are balanced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in VOID_TAGS:
            return
        self.stack.append(tag)
        if tag in ("script", "style", "title"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()
        if tag in ("script", "style", "title"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def doc_text(path: Path) -> tuple[str, list[str]]:
    raw = path.read_text(encoding="utf-8")
    if path.suffix != ".html":
        return raw, []
    parser = _TextExtractor()
    parser.feed(raw)
    parser.close()
    errors = list(parser.errors)
    if parser.stack:
        errors.append(f"unclosed tags: {parser.stack}")
    if "<h1>" not in raw:
        errors.append("no <h1>")
    return " ".join(parser.parts), errors


def count_words(text: str) -> int:
    """Whitespace-separated tokens containing a letter or digit.

    Markdown table pipes, rules and bullets are therefore not counted.
    """
    return sum(1 for tok in text.split() if re.search(r"\w", tok))


def normalise(text: str) -> str:
    text = unescape(text).lower()
    text = re.sub(r"[*_`|#]", " ", text)
    return re.sub(r"\s+", " ", text)


def main() -> int:
    problems: list[str] = []
    docs = sorted(p for p in DOC_DIR.iterdir() if p.is_file())
    texts: dict[str, str] = {}
    counts: dict[str, int] = {}

    for path in docs:
        if path.suffix not in (".md", ".txt", ".html"):
            problems.append(f"{path.name}: unexpected extension")
            continue
        doc_id = path.stem
        if doc_id in texts:
            problems.append(f"{path.name}: duplicate document id {doc_id}")
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", doc_id):
            problems.append(f"{path.name}: id is not a lowercase slug")
        text, errors = doc_text(path)
        problems.extend(f"{path.name}: {e}" for e in errors)
        n = count_words(text)
        counts[doc_id] = n
        texts[doc_id] = normalise(text)
        if not MIN_WORDS <= n <= MAX_WORDS:
            problems.append(f"{path.name}: {n} words, outside {MIN_WORDS}-{MAX_WORDS}")

    by_ext = {ext: sum(p.suffix == ext for p in docs) for ext in (".md", ".txt", ".html")}
    if by_ext[".txt"] < 3 or by_ext[".html"] < 3:
        problems.append(f"format mix too small: {by_ext}")

    questions = []
    for lineno, line in enumerate(EVAL_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"eval line {lineno}: invalid JSON ({exc})")
            continue
        missing = {"id", "question", "relevant", "answer_hint"} - q.keys()
        if missing:
            problems.append(f"eval line {lineno}: missing keys {sorted(missing)}")
            continue
        questions.append(q)

    ids = [q["id"] for q in questions]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"duplicate question id {dup}")

    covered: set[str] = set()
    for q in questions:
        rel = q["relevant"]
        if not isinstance(rel, list) or not rel:
            problems.append(f"{q['id']}: relevant must be a non-empty list")
            continue
        for doc_id in rel:
            if doc_id not in texts:
                problems.append(f"{q['id']}: relevant id {doc_id!r} has no document")
        covered.update(rel)
        hint = normalise(q["answer_hint"]).strip()
        if not any(hint in texts.get(d, "") for d in rel):
            problems.append(f"{q['id']}: answer_hint {q['answer_hint']!r} not found in {rel}")

    for doc_id in sorted(set(texts) - covered):
        problems.append(f"{doc_id}: not relevant to any question")

    print(f"documents: {len(docs)} {by_ext}")
    for doc_id in sorted(counts):
        print(f"  {doc_id:36s} {counts[doc_id]:4d} words")
    print(
        f"words: min {min(counts.values())}, max {max(counts.values())}, "
        f"total {sum(counts.values())}"
    )
    multi = sum(len(q["relevant"]) > 1 for q in questions if isinstance(q.get("relevant"), list))
    print(f"questions: {len(questions)} ({multi} with more than one relevant document)")
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in problems:
            print("  -", p)
        return 1
    print("OK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
