"""The last stage before the user: guard the system prompt, mask foreign PII, restore values.

The model writes in placeholder space (``<PERSON_1>``). Any raw PII value in its reply
therefore did not come from this user's messages, and is masked. Placeholders are then
restored to the user's own values; one the request's vault never issued (the model invented
``<LOCATION_3>``) becomes a plain ``[unknown location]``, never a raw tag. A reply that
contains the deployment's canary token, or quotes the system prompt at length, is cut and
replaced. A reply that starts to loop (``api.chat.repetition``) ends at its last complete
sentence before the repeating began, and says so through :attr:`ReplyFilter.looped`.

Text streams through with as little held back as possible: only a tail that could still
become a placeholder, a PII value (digits, '@'), the canary token, or a system-prompt quote
waits for the next chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from api.chat.repetition import RepetitionGuard
from api.services import OutputScanner
from models.pii.placeholders import PLACEHOLDER_RE, PlaceholderVault

__all__ = ["FilteredText", "ReplyFilter"]

_PARTIAL_PLACEHOLDER = re.compile(r"[<\[][A-Z_]*(?:_\d*)?$")
# A placeholder as the model may write it (also with square brackets, see the vault).
_WRITTEN_PLACEHOLDER = re.compile(r"[<\[]([A-Z][A-Z_]{1,30})_(\d{1,4})[>\]]")
_RUN_PUNCTUATION = set(".+-@()/:_")
_GLUE = set(" -.")
_MIN_QUOTE = 16


def _is_run_char(ch: str) -> bool:
    return ch.isalnum() or ch in _RUN_PUNCTUATION


def _pii_tail_start(text: str) -> int:
    """Where the trailing text that may still grow into a PII value begins.

    That is the word being written (it may yet turn out to be an e-mail's local part), plus
    any digit groups before it glued by single separators ("call 415 555 01…"). A linear
    scan from the end: a regular expression for this backtracks catastrophically on long
    runs without digits.
    """
    start = len(text)
    while start > 0 and _is_run_char(text[start - 1]):
        start -= 1
    while start > 0 and text[start - 1] in _GLUE:
        group_end = start - 1
        group_start = group_end
        while group_start > 0 and _is_run_char(text[group_start - 1]):
            group_start -= 1
        group = text[group_start:group_end]
        if not group or not any(ch.isdigit() or ch == "@" for ch in group):
            break
        start = group_start
    return start


@dataclass
class FilteredText:
    """What the filter lets through now, and what it decided."""

    text: str
    leaked: bool = False
    looped: bool = False


@dataclass
class ReplyFilter:
    """Per-reply streaming filter; feed model deltas, emit user-safe text."""

    vault: PlaceholderVault
    scanner: OutputScanner
    system_prompt: str
    canary: str
    leak_min_chars: int = 60
    replacement: str = "I can't share that."
    masked: dict[str, int] = field(default_factory=dict)
    # None: loops are not cut (the reply streams as the model wrote it).
    repetition: RepetitionGuard | None = None
    # Placeholders the model wrote that the vault never issued, by entity type.
    unissued: dict[str, int] = field(default_factory=dict)
    _raw: str = ""
    _emitted_upto: int = 0
    _leaked: bool = False
    _looped: bool = False

    def feed(self, delta: str) -> FilteredText:
        """Add model text; return what may be shown now."""
        if self._leaked or self._looped:
            return FilteredText("", leaked=self._leaked, looped=self._looped)
        start = len(self._raw)
        self._raw += delta
        if self._leak_found(since=start):
            return self._cut()
        cut = None if self.repetition is None else self.repetition.update(self._raw)
        if cut is not None:
            return self._end_loop(cut)
        return FilteredText(self._release(self._safe_boundary()))

    def flush(self) -> FilteredText:
        """The reply ended: release everything that is left."""
        if self._leaked or self._looped:
            return FilteredText("", leaked=self._leaked, looped=self._looped)
        if self._leak_found(since=len(self._raw)):
            return self._cut()
        if self.repetition is not None:
            cut = self.repetition.update(self._raw, final=True)
            if cut is not None:
                return self._end_loop(cut)
        return FilteredText(self._release(len(self._raw)))

    @property
    def leaked(self) -> bool:
        """Whether the reply was cut for leaking the system prompt or its canary."""
        return self._leaked

    @property
    def looped(self) -> bool:
        """Whether the reply was cut because it started repeating itself."""
        return self._looped

    def _end_loop(self, cut: int) -> FilteredText:
        # What was shown stays shown; the rest ends where the repeating began, without the
        # white space before it.
        self._looped = True
        end = max(self._emitted_upto, len(self._raw[:cut].rstrip()))
        return FilteredText(self._release(end), looped=True)

    def _cut(self) -> FilteredText:
        self._leaked = True
        return FilteredText(("\n\n" if self._emitted_upto else "") + self.replacement, leaked=True)

    def _leak_found(self, *, since: int) -> bool:
        pending = self._raw[max(0, self._emitted_upto - len(self.canary)) :]
        if self.canary and self.canary in pending:
            return True
        # A quote may end anywhere inside the new text: check each end position.
        return any(
            self._quote_length(self._raw[:end]) >= self.leak_min_chars
            for end in range(max(since, 1), len(self._raw) + 1)
        )

    def _quote_length(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a substring of the system prompt."""
        low, high = 0, min(len(text), len(self.system_prompt))
        while low < high:  # suffix-in-prompt is monotone in length: binary search
            mid = (low + high + 1) // 2
            if text[-mid:] in self.system_prompt:
                low = mid
            else:
                high = mid - 1
        return low

    def _safe_boundary(self) -> int:
        raw = self._raw
        boundary = len(raw)
        tail = raw[self._emitted_upto :]
        partial = _PARTIAL_PLACEHOLDER.search(tail)
        if partial:
            boundary = min(boundary, self._emitted_upto + partial.start())
        boundary = min(boundary, self._emitted_upto + _pii_tail_start(tail))
        boundary = min(boundary, self._emitted_upto + self.scanner.hold_from(tail))
        if self.repetition is not None:
            boundary = min(boundary, self.repetition.hold_from(raw))
        for size in range(min(len(self.canary) - 1, len(raw)), 0, -1):
            if raw.endswith(self.canary[:size]):
                boundary = min(boundary, len(raw) - size)
                break
        quote = self._quote_length(raw)
        if quote >= _MIN_QUOTE:
            boundary = min(boundary, len(raw) - quote)
        return max(boundary, self._emitted_upto)

    def _release(self, upto: int) -> str:
        if upto <= self._emitted_upto:
            return ""
        chunk = self._raw[self._emitted_upto : upto]
        self._emitted_upto = upto
        return self.vault.restore(self._unissued_to_words(self._mask(chunk)))

    def _unissued_to_words(self, chunk: str) -> str:
        """Placeholders this request's vault never issued, as words instead of raw tags."""

        def replace(match: re.Match[str]) -> str:
            placeholder = f"<{match.group(1)}_{match.group(2)}>"
            if self.vault.restore(placeholder) != placeholder:
                return match.group(0)  # issued: restored to the user's value afterwards
            kind = match.group(1)
            self.unissued[kind] = self.unissued.get(kind, 0) + 1
            return f"[unknown {kind.lower().replace('_', ' ')}]"

        return _WRITTEN_PLACEHOLDER.sub(replace, chunk)

    def _mask(self, chunk: str) -> str:
        protected = [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(chunk)]
        pieces, cursor = [], 0
        for span in self.scanner.find(chunk):
            if any(span.start < end and start < span.end for start, end in protected):
                continue
            pieces.append(chunk[cursor : span.start])
            pieces.append(f"[{span.entity_type.lower().replace('_', ' ')} removed]")
            self.masked[span.entity_type] = self.masked.get(span.entity_type, 0) + 1
            cursor = span.end
        pieces.append(chunk[cursor:])
        return "".join(pieces)
