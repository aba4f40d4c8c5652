"""Repetition loops in generated text: how the eval counts them and how a stream is cut.

Small models fall into loops ("Contact IT for help. Contact IT for help. Contact IT …").
One definition serves both uses: a loop is a run of :data:`LOOP_WORDS` words that occurs
:data:`LOOP_TIMES` times or more (:func:`find_loop`, what ``enclave eval`` reports as a
looping answer). :class:`RepetitionGuard` watches a streamed answer with the same rule, and
earlier, a complete sentence of three words or more that repeats an earlier one word for
word; it says where the answer should end (the start of the sentence where the repeating
began, so that the answer ends at its last complete sentence) and which text to hold back
meanwhile (a sentence under way that already repeats earlier words, so the repeat is not
shown before it is cut).

Words are ``\\w+`` runs, compared case-insensitively; punctuation and spacing do not count.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

__all__ = ["LOOP_TIMES", "LOOP_WORDS", "Loop", "RepetitionGuard", "find_loop"]

LOOP_WORDS = 6
LOOP_TIMES = 3
# A repeated sentence shorter than this is not a loop ("Yes. … Yes.").
_MIN_SENTENCE_WORDS = 3
# The first words of a sentence that, when they repeat an earlier sentence's first words,
# make the guard hold the sentence until it ends.
_PREFIX_WORDS = 3
_WORD = re.compile(r"\w+")
# A sentence ends at . ! ? (or a line break) followed by white space.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*")


@dataclass(frozen=True, slots=True)
class Loop:
    """A repeated run of words: where its second occurrence starts, and how often it came."""

    repeat_start: int
    """Character offset of the run's second occurrence (the first is the answer's own)."""
    times: int
    words: tuple[str, ...]


def find_loop(text: str, *, words: int = LOOP_WORDS, times: int = LOOP_TIMES) -> Loop | None:
    """The first run of ``words`` words that occurs ``times`` times in ``text``, or None."""
    matches = list(_WORD.finditer(text))
    tokens = [m.group(0).lower() for m in matches]
    seen: dict[tuple[str, ...], list[int]] = {}
    for end in range(words, len(tokens) + 1):
        gram = tuple(tokens[end - words : end])
        starts = seen.setdefault(gram, [])
        starts.append(end - words)
        if len(starts) >= times:
            return Loop(matches[starts[1]].start(), len(starts), gram)
    return None


@dataclass
class RepetitionGuard:
    """Watches one streamed answer for a loop; feed it the whole text so far each time."""

    words: int = LOOP_WORDS
    times: int = LOOP_TIMES
    _tokens: list[str] = field(default_factory=list)
    _token_starts: list[int] = field(default_factory=list)
    _scanned: int = 0
    _grams: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    _sentence_starts: list[int] = field(default_factory=lambda: [0])
    _sentence_scanned: int = 0
    _sentences: set[tuple[str, ...]] = field(default_factory=set)
    _prefixes: set[tuple[str, ...]] = field(default_factory=set)
    _suspect: bool = False
    _prefix_hold: bool = False
    _cut: int | None = None

    @property
    def cut(self) -> int | None:
        """Where the answer ends because of a loop (a character offset), once found."""
        return self._cut

    def update(self, text: str, *, final: bool = False) -> int | None:
        """Look at the new end of ``text`` (which only ever grows); the offset where the
        answer should end if it now loops, else None. ``final``: the text is complete (its
        last word and sentence are finished)."""
        if self._cut is not None:
            return self._cut
        self._scan_sentences(text, final)
        if self._cut is None:
            self._scan_words(text, final)
        return self._cut

    def hold_from(self, text: str) -> int:
        """Where the text that should not be shown yet begins (``len(text)`` if none): the
        sentence under way, when it already repeats earlier words."""
        held = self._suspect or self._prefix_hold
        return self._sentence_starts[-1] if held else len(text)

    def _scan_words(self, text: str, final: bool) -> None:
        for match in _WORD.finditer(text, self._scanned):
            if match.end() == len(text) and not final:
                break  # the word may still grow
            self._scanned = match.end()
            self._tokens.append(match.group(0).lower())
            self._token_starts.append(match.start())
            if len(self._tokens) < self.words:
                continue
            first = len(self._tokens) - self.words
            starts = self._grams.setdefault(tuple(self._tokens[first:]), [])
            starts.append(first)
            if len(starts) >= 2 and self._token_starts[starts[1]] >= self._sentence_starts[-1]:
                self._suspect = True
            if len(starts) >= self.times:
                self._cut = self._sentence_start_at(self._token_starts[starts[1]])
                return
        current = self._sentence_starts[-1]
        prefix = tuple(m.group(0).lower() for m in _WORD.finditer(text, current, self._scanned))[
            :_PREFIX_WORDS
        ]
        # The words so far start like an earlier sentence: hold them until they differ
        # (fewer than three words) or the sentence ends (three: it may be a repeat).
        matches = bool(prefix) and prefix in self._prefixes
        self._prefix_hold = matches and len(prefix) < _PREFIX_WORDS
        if matches and len(prefix) == _PREFIX_WORDS:
            self._suspect = True

    def _scan_sentences(self, text: str, final: bool) -> None:
        ends = [(m.start(), m.end()) for m in _SENTENCE_END.finditer(text, self._sentence_scanned)]
        if final and (not ends or ends[-1][1] < len(text)):
            ends.append((len(text), len(text)))
        for body_end, next_start in ends:
            if next_start == len(text) and not final:
                break  # the white space may go on; the next sentence starts later
            start = self._sentence_starts[-1]
            sentence = tuple(m.group(0).lower() for m in _WORD.finditer(text, start, body_end))
            self._sentence_scanned = next_start
            if len(sentence) >= _MIN_SENTENCE_WORDS and sentence in self._sentences:
                self._cut = start
                return
            if len(sentence) >= _MIN_SENTENCE_WORDS:
                self._sentences.add(sentence)
            if len(sentence) >= _PREFIX_WORDS:
                self._prefixes.update(sentence[:size] for size in range(1, _PREFIX_WORDS + 1))
            if next_start > start:
                self._sentence_starts.append(next_start)
            self._suspect = self._prefix_hold = False

    def _sentence_start_at(self, offset: int) -> int:
        """The start of the sentence that holds ``offset``."""
        return self._sentence_starts[bisect_right(self._sentence_starts, offset) - 1]
