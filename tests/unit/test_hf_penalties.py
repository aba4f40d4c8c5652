"""The transformers engine's frequency and presence penalties (``generate`` has none): the
same arithmetic as vLLM's, over the answer's tokens only."""

from __future__ import annotations

import torch

from models.llm.hf_engine import _AnswerPenalties


def test_penalties_count_answer_tokens_only() -> None:
    prompt = [4, 4, 4]
    answer = [1, 1, 2]
    scores = torch.zeros(1, 6)
    out = _AnswerPenalties(len(prompt), frequency=0.5, presence=0.25)(
        torch.tensor([prompt + answer]), scores
    )
    # token 1: twice in the answer; token 2: once; token 4: only in the prompt.
    assert out.tolist() == [[0.0, -1.25, -0.75, 0.0, 0.0, 0.0]]


def test_nothing_happens_before_the_first_answer_token() -> None:
    scores = torch.ones(1, 3)
    out = _AnswerPenalties(2, frequency=1.0, presence=1.0)(torch.tensor([[0, 1]]), scores)
    assert out.tolist() == [[1.0, 1.0, 1.0]]
