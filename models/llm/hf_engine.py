"""transformers backend: the independent fallback engine (same weights, different runtime)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from models.llm.base import (
    ChatMessage,
    EngineInfo,
    FinishReason,
    GenerationDelta,
    GenerationRequest,
)
from models.llm.chat_template import prompt_token_ids

__all__ = ["TransformersEngine"]

_DONE = object()


class TransformersEngine:
    """Runs a local model folder with ``transformers``' ``generate``, one thread per stream."""

    def __init__(
        self,
        model_dir: Path,
        *,
        served_name: str,
        max_model_len: int,
        dtype: str = "float32",
        max_concurrent: int = 8,
        torch_threads: int = 2,
    ) -> None:
        self._model_dir = model_dir
        self._served_name = served_name
        self._max_model_len = max_model_len
        self._dtype = dtype
        self._torch_threads = torch_threads
        self._slots = asyncio.Semaphore(max_concurrent)
        self._seed_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._active = 0

    async def start(self) -> None:
        """Load weights and tokenizer (about 2 s for SmolLM2-135M on CPU)."""
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(self._torch_threads)
        dtype = "auto" if self._dtype == "auto" else getattr(torch, self._dtype)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self._model_dir))
        self._model = AutoModelForCausalLM.from_pretrained(str(self._model_dir), dtype=dtype)
        self._model.eval()

    def info(self) -> EngineInfo:
        """The engine and model this instance runs."""
        import transformers

        return EngineInfo(
            engine="transformers",
            model=self._served_name,
            max_model_len=self._max_model_len,
            extra={"transformers_version": transformers.__version__},
        )

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens of the templated chat."""
        return len(prompt_token_ids(self._tokenizer, messages))

    def running_requests(self) -> int:
        """Streams generating right now (0 once every stream ended or was cancelled)."""
        return self._active

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]:
        """Stream deltas; closing the iterator stops the generating thread."""
        if self._model is None:
            msg = "TransformersEngine.start() has not been awaited"
            raise RuntimeError(msg)
        ids = (
            list(request.prompt_token_ids)
            if request.prompt_token_ids is not None
            else prompt_token_ids(self._tokenizer, request.messages, request.continue_from)
        )
        async with self._slots:
            self._active += 1
            try:
                async for delta in self._stream(ids, request):
                    yield delta
            finally:
                self._active -= 1

    async def _stream(
        self, ids: list[int], request: GenerationRequest
    ) -> AsyncIterator[GenerationDelta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        thread = threading.Thread(
            target=self._generate_blocking,
            args=(ids, request, loop, queue, cancelled),
            name=f"hf-generate-{request.request_id}",
            daemon=True,
        )
        thread.start()
        generated: list[int] = []
        emitted = ""
        stops = request.sampling.stop
        finish: FinishReason | None = None
        try:
            while finish is None:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _DONE:
                    finish = "length" if len(generated) >= request.sampling.max_tokens else "stop"
                    text = self._tokenizer.decode(generated, skip_special_tokens=True)
                else:
                    generated.extend(item)
                    text = self._tokenizer.decode(generated, skip_special_tokens=True)
                    if text.endswith("\ufffd"):
                        continue  # an incomplete UTF-8 sequence: wait for the next token
                cut = _first_stop(text, stops)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                elif finish is None and stops:
                    # Hold back a tail that could be the start of a stop string.
                    text = text[: len(text) - _partial_stop_overlap(text, stops)]
                delta, emitted = text[len(emitted) :], max(text, emitted, key=len)
                if delta or finish is not None:
                    yield GenerationDelta(
                        text=delta,
                        finish_reason=finish,
                        prompt_tokens=len(ids),
                        completion_tokens=len(generated),
                    )
        finally:
            cancelled.set()

    def _generate_blocking(
        self,
        ids: list[int],
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Any],
        cancelled: threading.Event,
    ) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        class _QueueStreamer(BaseStreamer):
            first = True

            def put(self, value: Any) -> None:
                if self.first:  # generate() first puts the prompt itself
                    self.first = False
                    return
                loop.call_soon_threadsafe(queue.put_nowait, value.reshape(-1).tolist())

            def end(self) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return cancelled.is_set()

        options = request.sampling
        kwargs: dict[str, Any] = {"max_new_tokens": options.max_tokens}
        if options.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = options.repetition_penalty
        if options.frequency_penalty or options.presence_penalty:
            kwargs["logits_processor"] = LogitsProcessorList(
                [_AnswerPenalties(len(ids), options.frequency_penalty, options.presence_penalty)]
            )
        if options.ignore_eos:
            kwargs["min_new_tokens"] = options.max_tokens
        if options.temperature > 0:
            kwargs.update(do_sample=True, temperature=options.temperature, top_p=options.top_p)
        else:
            kwargs.update(do_sample=False)
        try:
            if options.seed is not None:
                with self._seed_lock:
                    torch.manual_seed(options.seed)
            with torch.inference_mode():
                self._model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    streamer=_QueueStreamer(),
                    stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                    pad_token_id=self._tokenizer.eos_token_id,
                    **kwargs,
                )
        except Exception as exc:  # handed to the consumer, which re-raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    async def check_health(self) -> None:
        """Raise if the model is not loaded."""
        if self._model is None:
            msg = "transformers engine not loaded"
            raise RuntimeError(msg)

    async def shutdown(self) -> None:
        """Drop the model."""
        self._model = None


class _AnswerPenalties:
    """vLLM's (and OpenAI's) frequency and presence penalties, which ``generate`` lacks:
    counted over the answer's tokens only, not the prompt's."""

    def __init__(self, prompt_length: int, frequency: float, presence: float) -> None:
        self._prompt_length = prompt_length
        self._frequency = frequency
        self._presence = presence

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        answer = input_ids[:, self._prompt_length :]
        if answer.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, answer, torch.ones_like(answer, dtype=scores.dtype)
        )
        return scores - self._frequency * counts - self._presence * (counts > 0).to(scores.dtype)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [text.find(stop) for stop in stops if stop and stop in text]
    return min(positions) if positions else None


def _partial_stop_overlap(text: str, stops: Sequence[str]) -> int:
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                longest = max(longest, size)
                break
    return longest
