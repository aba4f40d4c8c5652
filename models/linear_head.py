"""Text-classifier heads trained with scikit-learn and stored as JSON.

A head blends two logistic regressions: one over MiniLM sentence embeddings (meaning), one
over character n-gram TF-IDF (surface form: odd spellings, encodings, markup). The blend
weight is chosen by cross-validation on the training split only.

JSON, not pickle: the artifact is data, checksummed in the model store, and loading it
executes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["TextHead", "train_head"]

FloatArray = npt.NDArray[np.float32]
_NGRAMS = (2, 5)


def _softmax_or_sigmoid(logits: FloatArray) -> FloatArray:
    if logits.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        probs = np.stack([1.0 - positive, positive], axis=1)
    else:
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        probs = exp / exp.sum(axis=1, keepdims=True)
    result: FloatArray = probs.astype(np.float32)
    return result


@dataclass
class TextHead:
    """Blend of an embedding head and a character n-gram head over the same labels."""

    labels: tuple[str, ...]
    embedding_coef: FloatArray
    embedding_intercept: FloatArray
    ngram_vocabulary: dict[str, int]
    ngram_idf: FloatArray
    ngram_coef: FloatArray
    ngram_intercept: FloatArray
    embedding_weight: float
    _vectorizer: Any = None

    def probabilities(self, texts: Sequence[str], embeddings: FloatArray) -> FloatArray:
        """One row of label probabilities per text."""
        semantic = _softmax_or_sigmoid(
            embeddings @ self.embedding_coef.T + self.embedding_intercept
        )
        if self.embedding_weight >= 1.0:
            return semantic
        features = self._ngrams().transform(list(texts))
        surface = _softmax_or_sigmoid(
            np.asarray(features @ self.ngram_coef.T, dtype=np.float32) + self.ngram_intercept
        )
        blended: FloatArray = (
            self.embedding_weight * semantic + (1 - self.embedding_weight) * surface
        )
        return blended

    def predict(self, texts: Sequence[str], embeddings: FloatArray) -> list[tuple[str, float]]:
        """The best label and its probability, per text."""
        probs = self.probabilities(texts, embeddings)
        best = probs.argmax(axis=1)
        return [(self.labels[i], float(probs[row, i])) for row, i in enumerate(best)]

    def _ngrams(self) -> Any:
        if self._vectorizer is None:
            self._vectorizer = _vectorizer(self.ngram_vocabulary)
            self._vectorizer.idf_ = self.ngram_idf
        return self._vectorizer

    def save(self, path: Path, metadata: dict[str, Any]) -> None:
        """Write the head (and its training metadata) as JSON."""
        document = {
            "labels": list(self.labels),
            "embedding": {
                "coef": self.embedding_coef.round(6).tolist(),
                "intercept": self.embedding_intercept.round(6).tolist(),
            },
            "ngram": {
                "vocabulary": self.ngram_vocabulary,
                "idf": self.ngram_idf.round(6).tolist(),
                "coef": self.ngram_coef.round(6).tolist(),
                "intercept": self.ngram_intercept.round(6).tolist(),
            },
            "embedding_weight": self.embedding_weight,
            "metadata": metadata,
        }
        path.write_text(json.dumps(document, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TextHead:
        """Read a head written by :meth:`save`."""
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            labels=tuple(doc["labels"]),
            embedding_coef=np.asarray(doc["embedding"]["coef"], dtype=np.float32),
            embedding_intercept=np.asarray(doc["embedding"]["intercept"], dtype=np.float32),
            ngram_vocabulary={k: int(v) for k, v in doc["ngram"]["vocabulary"].items()},
            ngram_idf=np.asarray(doc["ngram"]["idf"], dtype=np.float64),
            ngram_coef=np.asarray(doc["ngram"]["coef"], dtype=np.float32),
            ngram_intercept=np.asarray(doc["ngram"]["intercept"], dtype=np.float32),
            embedding_weight=float(doc["embedding_weight"]),
        )


def _vectorizer(vocabulary: dict[str, int] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer="char_wb", ngram_range=_NGRAMS, sublinear_tf=True, min_df=2, vocabulary=vocabulary
    )


def _fit(
    texts: Sequence[str],
    embeddings: FloatArray,
    labels: Sequence[str],
    seed: int,
    weight: float,
) -> TextHead:
    from sklearn.linear_model import LogisticRegression

    semantic = LogisticRegression(
        C=4.0, max_iter=3000, random_state=seed, class_weight="balanced"
    ).fit(embeddings, list(labels))
    vectorizer = _vectorizer()
    features = vectorizer.fit_transform(list(texts))
    surface = LogisticRegression(
        C=10.0, max_iter=3000, random_state=seed, class_weight="balanced"
    ).fit(features, list(labels))
    return TextHead(
        labels=tuple(str(c) for c in semantic.classes_),
        embedding_coef=np.asarray(semantic.coef_, dtype=np.float32),
        embedding_intercept=np.asarray(semantic.intercept_, dtype=np.float32),
        ngram_vocabulary={k: int(v) for k, v in vectorizer.vocabulary_.items()},
        ngram_idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        ngram_coef=np.asarray(surface.coef_, dtype=np.float32),
        ngram_intercept=np.asarray(surface.intercept_, dtype=np.float32),
        embedding_weight=weight,
    )


def train_head(
    texts: Sequence[str],
    embeddings: FloatArray,
    labels: Sequence[str],
    *,
    seed: int = 13,
    weights: Sequence[float] = (1.0, 0.7, 0.5),
) -> tuple[TextHead, dict[str, float]]:
    """Fit the head; the blend weight is the best macro-F1 in 5-fold CV on these data only."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    texts, labels = list(texts), list(labels)
    scores: dict[str, float] = {}
    for weight in weights:
        fold_scores = []
        for train_idx, val_idx in folds.split(embeddings, labels):
            head = _fit(
                [texts[i] for i in train_idx],
                embeddings[train_idx],
                [labels[i] for i in train_idx],
                seed,
                weight,
            )
            guessed = [g for g, _ in head.predict([texts[i] for i in val_idx], embeddings[val_idx])]
            fold_scores.append(f1_score([labels[i] for i in val_idx], guessed, average="macro"))
        scores[f"{weight:.1f}"] = round(float(np.mean(fold_scores)), 4)
    best = max(weights, key=lambda w: (scores[f"{w:.1f}"], w))
    return _fit(texts, embeddings, labels, seed, best), scores
