"""Runs a prompt's regression suites through the real chat pipeline, before activation.

Each case goes through the same stages as a user's request (guards, retrieval, the prompt
under test, the live model at temperature 0 with a fixed seed, the reply filter), without
quota, history or audit records. A case that needs a knowledge base the tenant does not have
is reported as skipped (never run against another tenant's documents).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from api.chat.openai_types import ChatCompletionRequest, RequestMessage
from api.chat.pipeline import ChatPipeline
from api.chat.request_plan import Planner
from api.chat.validation import validate_chat_request
from core.errors import ClientError
from core.prompts import CaseOutcome, EffectivePrompt, PromptSuite, SuiteCase, check_case
from core.settings import ApiSettings
from models.llm.base import GenerationDelta

__all__ = ["SUITE_SEED", "SuiteReport", "SuiteRunner"]

_log = logging.getLogger("enclave.prompts.checks")

SUITE_SEED = 7
"""Sampling seed of every suite case (with temperature 0: the same answer every run)."""


@dataclass(slots=True)
class SuiteReport:
    """The outcome of a prompt's suites: passed, failed and skipped cases."""

    prompt_version: str
    passed: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether no case failed."""
        return not self.failed

    def document(self) -> dict[str, Any]:
        """The report as the API and the version's ``last_check`` show it."""
        return {
            "prompt_version": self.prompt_version,
            "ok": self.ok,
            "passed": list(self.passed),
            "failed": list(self.failed),
            "skipped": list(self.skipped),
            "elapsed_s": round(self.elapsed_s, 2),
        }


class SuiteRunner:
    """Runs the suites that guard a prompt against a candidate version of it."""

    def __init__(
        self,
        pipeline: ChatPipeline,
        planner: Planner,
        suites: Sequence[PromptSuite],
        api_settings: ApiSettings,
    ) -> None:
        self._pipeline = pipeline
        self._planner = planner
        self._suites = list(suites)
        self._api_settings = api_settings

    def suites_for(self, prompt_name: str) -> list[PromptSuite]:
        """The suites that guard ``prompt_name``."""
        return [suite for suite in self._suites if suite.prompt == prompt_name]

    async def run(
        self, prompt_name: str, prompt: EffectivePrompt, *, tenant: str, subject: str
    ) -> SuiteReport:
        """Every case of the prompt's suites, in order, against ``prompt``."""
        started = time.perf_counter()
        report = SuiteReport(prompt_version=prompt.version)
        for suite in self.suites_for(prompt_name):
            for case in suite.cases:
                case_id = f"{suite.name}/{case.id}"
                try:
                    outcome = await self._run_case(case, prompt, tenant, subject)
                except ClientError as exc:
                    if case.knowledge_base is None:
                        raise
                    report.skipped.append({"case": case_id, "reason": exc.detail})
                    continue
                if outcome.passed:
                    report.passed.append(case_id)
                else:
                    report.failed.append({"case": case_id, "failures": list(outcome.failures)})
        report.elapsed_s = time.perf_counter() - started
        _log.info(
            "prompt suite ran",
            extra={
                "prompt_version": prompt.version,
                "passed": len(report.passed),
                "failed": len(report.failed),
                "skipped": len(report.skipped),
                "elapsed_s": round(report.elapsed_s, 2),
            },
        )
        return report

    async def _run_case(
        self, case: SuiteCase, prompt: EffectivePrompt, tenant: str, subject: str
    ) -> CaseOutcome:
        body = ChatCompletionRequest(
            model=self._pipeline.served_models[0],
            messages=[RequestMessage(role=m["role"], content=m["content"]) for m in case.messages],
            temperature=0.0,
            seed=SUITE_SEED,
            max_tokens=case.max_tokens,
            knowledge_base=case.knowledge_base,
        )
        runtime = await self._planner.runtime(tenant)
        chat = validate_chat_request(
            body,
            self._api_settings,
            max_completion_tokens=max(runtime.max_completion_tokens, case.max_tokens),
        )
        plan = await self._planner.plan(
            tenant=tenant,
            subject=subject,
            client=None,
            language=None,
            runtime=runtime,
            prompt=prompt,
        )
        request_id = "suite-" + secrets.token_hex(8)
        run = await self._pipeline.prepare(chat, request_id, tenant, plan)
        last = GenerationDelta(text="")
        if run.fit is None:
            answer = self._pipeline.canned_reply(run)
        else:
            parts: list[str] = []
            async with aclosing(self._pipeline.stream(chat, run)) as deltas:
                async for delta in deltas:
                    if isinstance(delta, GenerationDelta):  # not a fallback notice
                        parts.append(delta.text)
                        last = delta
            answer = "".join(parts)
        return check_case(case, answer, run.lineage(), last.completion_tokens)
