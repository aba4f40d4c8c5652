"""Rules that catch prompt-injection phrasings, also inside encoded payloads.

The classifier generalises; the rules are precise on the phrasings seen in the wild and
look inside base64, hex and spaced-out text, which embeddings cannot read.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata

__all__ = ["RULES", "decoded_payloads", "rule_hits"]

_I = re.IGNORECASE
RULES: dict[str, re.Pattern[str]] = {
    "override_instructions": re.compile(
        r"\b(ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}\b"
        r"(previous|prior|above|earlier|all|your|the|any)\b[^.\n]{0,30}\b"
        r"(instructions?|rules|prompt|guidelines|directives|programming|restrictions)\b",
        _I,
    ),
    "reveal_system_prompt": re.compile(
        r"\b(reveal|print|show|repeat|output|display|tell me|leak|dump)\b[^.\n]{0,40}\b"
        r"(system prompt|initial prompt|hidden (?:prompt|instructions)|your (?:instructions|"
        r"rules|prompt|guidelines)|text (?:above|before)|everything above)",
        _I,
    ),
    "unrestricted_persona": re.compile(
        r"\b(you are|you're|act as|pretend (?:to be|you are)|from now on|roleplay as|play)\b"
        r"[^.\n]{0,60}\b(DAN|do anything now|no (?:restrictions|filters|rules|limits)|"
        r"without (?:any )?(?:restrictions|filters|rules|limits|guidelines)|unfiltered|"
        r"uncensored|jailbroken|evil (?:ai|assistant))\b",
        _I,
    ),
    "fake_role_marker": re.compile(
        r"(^|\n)\s*#{2,}\s*(system|assistant|developer)\b\s*:?|\[/?INST\]|<\|im_start\|>|"
        r"</(user|human)>\s*<(system|assistant)>|"
        r"\"role\"\s*:\s*\"system\"\s*,\s*\"content\"\s*:\s*\"[^\"]*\b(ignore|you (?:are|must)|"
        r"new instructions)",
        _I,
    ),
    "foreign_override": re.compile(
        r"\b(ignore[zr]?|oublie[zr]?|ignoriere|vergiss|ignora|olvida)\b[^.\n]{0,40}\b"
        r"(instructions|anweisungen|instrucciones|istruzioni|consignes)\b",
        _I,
    ),
    "instructions_for_ai": re.compile(
        r"\b(note|notes|instructions?|message|directive|reminder)\s+(to|for)\s+(any\s+|all\s+)?"
        r"(ai|a\.i\.|assistants?|ai assistants?|ai models?|language models?|llms?|chatbots?|"
        r"ai screeners?|automated (?:systems|readers|screeners))\b|"
        r"\b(ai|llm|assistant)s?\s+(reading|processing|screening|summari[sz]ing) this\b",
        _I,
    ),
    "decode_and_follow": re.compile(
        r"\b(decode|decipher|translate)\b[^.\n]{0,60}\b(follow|execute|obey|do what it says|"
        r"carry out)\b",
        _I,
    ),
}

# Bounded repetitions keep every pattern linear on long adversarial input.
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,8192}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}\s?){12,2048}\b")
_BINARY = re.compile(r"\b(?:[01]{8}\s?){6,1024}\b")
_SPACED = re.compile(r"\b(?:[A-Za-z][\s.\-_*]){5,256}[A-Za-z]\b")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or sum(ch.isprintable() or ch.isspace() for ch in text) < 0.9 * len(text):
        return None
    return text


def decoded_payloads(text: str) -> list[str]:
    """Readable texts hidden in base64, hex, rot13, spaced letters or zero-width characters."""
    found: list[str] = []
    for match in _BASE64.findall(text):
        padded = match + "=" * (-len(match) % 4)
        try:
            decoded = _printable(base64.b64decode(padded, validate=True))
        except (binascii.Error, ValueError):
            decoded = None
        if decoded:
            found.append(decoded)
    for match in _HEX.findall(text):
        try:
            decoded = _printable(bytes.fromhex(re.sub(r"\s", "", match)))
        except ValueError:
            decoded = None
        if decoded:
            found.append(decoded)
    for match in _BINARY.findall(text):
        bits = re.sub(r"\s", "", match)
        decoded = _printable(int(bits, 2).to_bytes(len(bits) // 8, "big"))
        if decoded:
            found.append(decoded)
    if "rot13" in text.lower():
        found.append(codecs.decode(text, "rot13"))
    for match in _SPACED.findall(text):
        found.append(re.sub(r"[\s.\-_*]", "", match))
    stripped = text.translate(_ZERO_WIDTH)
    if stripped != text:
        found.append(stripped)
    return found


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    leet = str.maketrans(
        {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
    )
    return text.translate(leet) if re.search(r"[a-z][0-9@$][a-z]", text, _I) else text


def rule_hits(text: str) -> list[str]:
    """Names of the rules the text (or a payload decoded from it) triggers."""
    hits: list[str] = []
    candidates = [(_normalise(text), "")]
    candidates += [(_normalise(p), "encoded:") for p in decoded_payloads(text)]
    for candidate, prefix in candidates:
        for name, pattern in RULES.items():
            tag = prefix + name
            if tag not in hits and pattern.search(candidate):
                hits.append(tag)
    return hits
