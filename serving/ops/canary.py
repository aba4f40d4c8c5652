"""The viability canary: one synthetic conversation through the public API, checked step by step.

``run_canary`` talks to a running Enclave exactly as a user's OpenAI client does, with its
own API key, and checks each stage a user depends on:

============  ==========================================================================
auth          a request without a key is refused (401); with the key ``GET /v1/me`` answers
guards        a message carrying a synthetic, per-run e-mail address: the lineage says the
              address was protected, the guards let the message through, and the answer
              gives the address back restored, never as a placeholder
retrieval     a handbook question (streamed): its expected document is among the sources
generation    non-empty answer, a finish reason, usage counted
output_scan   the reply filter ran (lineage fields present, no leak cut) and no placeholder
              reached either answer
============  ==========================================================================

Each step is timed and fails with a message naming what broke and the request id to look
up (generation and output_scan check answers fetched by the steps before them, so their
own time is only the checking; the answer's time to first token and stream time are in the
generation step's detail). Answers are kept short (32 tokens): every run counts against
the canary user's and its tenant's token quota. The report never holds the API key, the
synthetic value or the answers' text, so it may go to logs, alerts and metrics as it is.
The report and its Prometheus metrics are in ``serving.ops.canary_report``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import openai

from core.settings import CanarySettings
from models.pii.placeholders import PLACEHOLDER_RE
from serving.ops.canary_report import STEPS, CanaryMetrics, CanaryReport, CanaryStep

__all__ = [
    "PII_PROMPT",
    "STEPS",
    "CanaryMetrics",
    "CanaryReport",
    "CanaryStep",
    "api_root",
    "run_canary",
    "synthetic_email",
]

_log = logging.getLogger("enclave.canary")

"""The canary's steps, in the order they run."""

PII_PROMPT = (
    "Write a one-line greeting to me; my email is {email}. Include my email in the greeting."
)
"""The guards step's message. Measured against the test stack (SmolLM2-135M, temperature 0):
this wording was answered and echoed the address every time; wordings such as "Please
confirm my email address: ..." or "Repeat ...: ..." were blocked by the injection guard,
and "update my contact email ..." was answered without the address.
"""

_MAX_MESSAGE = 400


def synthetic_email() -> str:
    """A clearly fake, per-run address (RFC 2606 ``example.com``) that Presidio detects."""
    return f"canary.probe.{secrets.token_hex(4)}@enclave-canary.example.com"


def api_root(base_url: str) -> str:
    """The server root of ``base_url`` (``http://host:port``, with or without ``/v1``)."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


class _StepSkipped(Exception):
    """Nothing to check: an earlier step got no answer."""


class _StepFailed(Exception):
    """A check did not hold (message for the operator, request id to look up)."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


@dataclass(slots=True)
class _Answer:
    """What a chat call returned, as far as the checks need it."""

    text: str
    finish_reason: str | None
    usage: dict[str, int] | None
    lineage: dict[str, Any]
    request_id: str | None
    ttft_s: float = 0.0
    total_s: float = 0.0


class _Run:
    """State shared by the steps of one run."""

    def __init__(self, base_url: str, api_key: str, settings: CanarySettings) -> None:
        self.root = api_root(base_url)
        self.api_key = api_key
        self.settings = settings
        self.deadline = time.monotonic() + settings.timeout_s
        self.email = synthetic_email()
        self.model = ""
        self.pii: _Answer | None = None
        self.grounded: _Answer | None = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            msg = f"the canary's time budget ({self.settings.timeout_s:g} s) ran out"
            raise _StepFailed(msg)
        return left

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.root}/v1",
            api_key=self.api_key,
            max_retries=0,
            timeout=self.remaining(),
        )

    def redact(self, text: str) -> str:
        """Keep the key and the synthetic value out of every message that leaves the run."""
        for secret in (self.api_key, self.email):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text[:_MAX_MESSAGE]


def _lineage(obj: object) -> dict[str, Any]:
    extra = getattr(obj, "model_extra", None) or {}
    found = extra.get("enclave")
    return found if isinstance(found, dict) else {}


def _placeholders(text: str) -> list[str]:
    return sorted({m.group(0) for m in PLACEHOLDER_RE.finditer(text)})


def _auth(run: _Run) -> dict[str, Any]:
    with httpx.Client(timeout=run.remaining()) as http:
        anonymous = http.get(f"{run.root}/v1/me")
        if anonymous.status_code != 401:
            msg = f"GET /v1/me without credentials answered {anonymous.status_code}, not 401"
            raise _StepFailed(msg, anonymous.headers.get("x-request-id"))
        me = http.get(f"{run.root}/v1/me", headers={"Authorization": f"Bearer {run.api_key}"})
    request_id = me.headers.get("x-request-id")
    if me.status_code != 200:
        detail = me.json().get("detail", "") if "json" in me.headers.get("content-type", "") else ""
        msg = f"GET /v1/me with the canary's key answered {me.status_code}: {detail}"
        raise _StepFailed(msg.rstrip(": "), request_id)
    roles = set(me.json().get("roles", []))
    if not roles & {"staff", "tenant_admin"}:
        msg = f"the canary's key has roles {sorted(roles)}; chatting needs staff or tenant_admin"
        raise _StepFailed(msg, request_id)
    models = run.client().models.list()
    if not models.data:
        raise _StepFailed("GET /v1/models lists no model", request_id)
    run.model = models.data[0].id
    return {"roles": sorted(roles), "tenant": me.json().get("tenant"), "model": run.model}


def _guards(run: _Run) -> dict[str, Any]:
    started = time.monotonic()
    raw = run.client().chat.completions.with_raw_response.create(
        model=run.model,
        messages=[{"role": "user", "content": PII_PROMPT.format(email=run.email)}],
        max_tokens=32,
        temperature=0,
    )
    completion = raw.parse()
    lineage = _lineage(completion)
    text = (completion.choices[0].message.content or "") if completion.choices else ""
    run.pii = _Answer(
        text=text,
        finish_reason=completion.choices[0].finish_reason if completion.choices else None,
        usage=None,
        lineage=lineage,
        request_id=lineage.get("request_id") or raw.headers.get("x-request-id"),
        total_s=time.monotonic() - started,
    )
    request_id = run.pii.request_id
    protected = (lineage.get("pii") or {}).get("protected") or {}
    if not protected.get("EMAIL_ADDRESS"):
        msg = (
            "the guards did not protect the synthetic e-mail address "
            f"(lineage pii.protected = {protected})"
        )
        raise _StepFailed(msg, request_id)
    leaked = _placeholders(text)
    if leaked:
        msg = f"the answer shows placeholders {leaked} instead of the user's own value"
        raise _StepFailed(msg, request_id)
    decision = lineage.get("decision")
    if decision != "answer":
        intent = (lineage.get("guard") or {}).get("intent")
        msg = (
            f"the guards decided {decision!r} (intent {intent!r}) for the canary's benign "
            "message, so the model never answered it"
        )
        raise _StepFailed(msg, request_id)
    if run.email not in text:
        msg = "the answer does not give the user's e-mail address back (restored)"
        raise _StepFailed(msg, request_id)
    usage = completion.usage.model_dump() if completion.usage else {}
    return {
        "decision": decision,
        "protected": protected,
        "restored": True,
        "total_tokens": usage.get("total_tokens"),
    }


def _ask(run: _Run) -> _Answer:
    started = time.monotonic()
    raw = run.client().chat.completions.with_raw_response.create(
        model=run.model,
        messages=[{"role": "user", "content": run.settings.question}],
        max_tokens=32,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = raw.headers.get("x-request-id")
    parts: list[str] = []
    finish: str | None = None
    usage: dict[str, int] | None = None
    lineage: dict[str, Any] = {}
    ttft = 0.0
    for chunk in raw.parse():
        if chunk.choices:
            choice = chunk.choices[0]
            if choice.delta.content:
                if not parts:
                    ttft = time.monotonic() - started
                parts.append(choice.delta.content)
            finish = choice.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        lineage = _lineage(chunk) or lineage
    return _Answer(
        text="".join(parts),
        finish_reason=finish,
        usage=usage,
        lineage=lineage,
        request_id=lineage.get("request_id") or request_id,
        ttft_s=ttft,
        total_s=time.monotonic() - started,
    )


def _retrieval(run: _Run) -> dict[str, Any]:
    run.grounded = answer = _ask(run)
    lineage = answer.lineage
    if not lineage:
        raise _StepFailed("the streamed answer carried no lineage chunk", answer.request_id)
    status = lineage.get("retrieval")
    documents = [s.get("document_id") for s in lineage.get("sources") or []]
    if status != "ok":
        msg = f"retrieval was {status!r}, not 'ok' (decision {lineage.get('decision')!r})"
        raise _StepFailed(msg, answer.request_id)
    expected = run.settings.expected_document
    if expected not in documents:
        msg = f"expected document {expected!r} is not among the sources {documents}"
        raise _StepFailed(msg, answer.request_id)
    return {"sources": documents, "server_ms": lineage.get("timings_ms", {}).get("retrieval")}


def _generation(run: _Run) -> dict[str, Any]:
    answer = run.grounded
    if answer is None:
        raise _StepSkipped("no answer to check: the retrieval step got none")
    if not answer.text.strip():
        raise _StepFailed("the answer is empty", answer.request_id)
    if not answer.finish_reason:
        raise _StepFailed("the answer has no finish_reason", answer.request_id)
    usage = answer.usage or {}
    if usage.get("completion_tokens", 0) <= 0 or usage.get("prompt_tokens", 0) <= 0:
        raise _StepFailed(f"usage was not counted: {usage}", answer.request_id)
    return {
        "engine": answer.lineage.get("engine"),
        "fallback": answer.lineage.get("fallback"),
        "finish_reason": answer.finish_reason,
        "completion_tokens": usage["completion_tokens"],
        "prompt_tokens": usage["prompt_tokens"],
        "ttft_s": round(answer.ttft_s, 3),
        "stream_s": round(answer.total_s, 3),
        "answer_chars": len(answer.text),
    }


def _output_scan(run: _Run) -> dict[str, Any]:
    checked = [a for a in (run.pii, run.grounded) if a is not None]
    if len(checked) < 2:
        raise _StepSkipped("an earlier step got no answer to scan")
    for answer in checked:
        guard = answer.lineage.get("guard") or {}
        pii = answer.lineage.get("pii") or {}
        if not isinstance(guard.get("reply_cut_for_leak"), bool) or not isinstance(
            pii.get("masked_in_reply"), dict
        ):
            msg = "the lineage does not show the reply filter's decisions (did it run?)"
            raise _StepFailed(msg, answer.request_id)
        if guard["reply_cut_for_leak"]:
            msg = "the reply filter cut an answer for leaking the system prompt"
            raise _StepFailed(msg, answer.request_id)
        leaked = _placeholders(answer.text)
        if leaked:
            raise _StepFailed(f"placeholders {leaked} reached the answer", answer.request_id)
    return {"masked_in_reply": [a.lineage["pii"]["masked_in_reply"] for a in checked]}


_CHECKS: dict[str, Callable[[_Run], dict[str, Any]]] = {
    "auth": _auth,
    "guards": _guards,
    "retrieval": _retrieval,
    "generation": _generation,
    "output_scan": _output_scan,
}


def _problem_text(exc: openai.APIStatusError) -> tuple[str, str | None]:
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = body.get("detail") or body.get("title") or exc.message
    request_id = body.get("request_id") or exc.response.headers.get("x-request-id")
    return f"HTTP {exc.status_code}: {detail}", request_id


def _run_step(run: _Run, name: str) -> CanaryStep:
    started = time.monotonic()
    step = CanaryStep(name=name, status="ok")
    try:
        step.detail = _CHECKS[name](run)
    except _StepSkipped as exc:
        step.status, step.message = "skipped", str(exc)
    except _StepFailed as exc:
        step.status, step.message, step.request_id = "failed", exc.message, exc.request_id
    except openai.APIStatusError as exc:
        step.status = "failed"
        step.message, step.request_id = _problem_text(exc)
    except (openai.APIConnectionError, httpx.HTTPError) as exc:
        step.status = "failed"
        step.message = f"cannot reach {run.root}: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a canary reports every failure rather than crashing
        _log.exception("canary step raised", extra={"step": name})
        step.status, step.message = "failed", f"{type(exc).__name__}: {exc}"
    step.duration_s = time.monotonic() - started
    step.message = run.redact(step.message)
    return step


def run_canary(base_url: str, api_key: str, settings: CanarySettings) -> CanaryReport:
    """Run the canary conversation against ``base_url`` with ``api_key``; never raises.

    Every step that can still check something runs after a failure, so one report shows all
    that is broken; without authentication the rest is skipped.
    """
    run = _Run(base_url, api_key, settings)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    steps: list[CanaryStep] = []
    for name in STEPS:
        if steps and steps[0].status != "ok":
            # Without authentication nothing else can be checked.
            steps.append(CanaryStep(name=name, status="skipped", message="auth failed"))
            continue
        steps.append(_run_step(run, name))
    report = CanaryReport(
        base_url=run.root,
        started_at=started_at,
        duration_s=time.monotonic() - started,
        steps=steps,
    )
    _log.info(
        "canary run",
        extra={
            "result": "ok" if report.ok else "failed",
            "failed_step": report.failed_step.name if report.failed_step else None,
            "request_id": report.failed_step.request_id if report.failed_step else None,
            "seconds": round(report.duration_s, 2),
        },
    )
    return report
