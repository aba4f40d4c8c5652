"""The text guard: intent and prompt-injection verdicts from one encoder pass per text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.encoder import SentenceEncoder
from models.guard_types import GuardVerdict
from models.injection.rules import rule_hits
from models.linear_head import TextHead

__all__ = ["GuardVerdict", "TextGuard"]


class TextGuard:
    """Encoder + intent head + injection head + rules."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        intent_head: TextHead,
        injection_head: TextHead,
        *,
        injection_threshold: float = 0.5,
        encoder_id: str = "",
    ) -> None:
        self._encoder = encoder
        self._encoder_id = encoder_id
        self._intent = intent_head
        self._injection = injection_head
        self._threshold = injection_threshold
        self._injection_index = injection_head.labels.index("injection")

    @classmethod
    def from_folders(
        cls,
        encoder_dir: Path,
        intent_dir: Path,
        injection_dir: Path,
        *,
        injection_threshold: float = 0.5,
        threads: int | None = None,
        encoder_id: str = "",
    ) -> TextGuard:
        """Load the encoder and both heads from the model store."""
        encoder = SentenceEncoder(encoder_dir, threads=threads)
        encoder.load()
        return cls(
            encoder,
            TextHead.load(intent_dir / "head.json"),
            TextHead.load(injection_dir / "head.json"),
            injection_threshold=injection_threshold,
            encoder_id=encoder_id,
        )

    def injection_labels(self, texts: Sequence[str]) -> list[str]:
        """'injection' or 'benign' per text, as the guard decides (for evaluation)."""
        return ["injection" if v.injection else "benign" for v in self.check(texts)]

    def check(self, texts: Sequence[str]) -> list[GuardVerdict]:
        """One verdict per text."""
        embeddings = self._encoder.encode(texts)
        intents = self._intent.predict(texts, embeddings)
        injection_probs = self._injection.probabilities(texts, embeddings)[:, self._injection_index]
        verdicts = []
        share = bool(self._encoder_id)
        for index, (text, (intent, confidence), score) in enumerate(
            zip(texts, intents, injection_probs, strict=True)
        ):
            rules = tuple(rule_hits(text))
            verdicts.append(
                GuardVerdict(
                    intent=intent,
                    intent_confidence=round(confidence, 4),
                    injection=bool(rules) or float(score) >= self._threshold,
                    injection_score=round(float(score), 4),
                    injection_rules=rules,
                    embedding=embeddings[index].astype("float32").tobytes() if share else b"",
                    embedding_model=self._encoder_id if share else "",
                )
            )
        return verdicts
