"""``enclave eval run|report``: curated datasets against the live stack, scores over time.

``run`` asks the stack over HTTP with the real ``openai`` client (``--base-url``, default
this host's API; the key from ``--api-key-file`` or ``ENCLAVE_EVAL_API_KEY``, a staff or
tenant_admin key of the tenant to evaluate) and stores one ``eval_runs`` row per dataset
straight in the database of the settings, so it runs where the settings are: the embedded
stack's host, or a Kubernetes Job with the database secret. It exits 0 when everything
passed, 1 when a suite case failed or the handbook score is below ``--min-score``, 2 when
it could not run.

``report`` prints the stored runs with a marker on each step (``api.stores.evals``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from api.stores.evals import FIGURES, MAX_LIMIT, EvalRun, EvalStore, Step, run_document
from core.errors import EnclaveError
from core.settings import Settings
from serving.ops.eval_datasets import (
    DATASETS,
    MAX_TOKENS,
    SLICES,
    DatasetRun,
    EvalAborted,
    OpenAIAsker,
    load_handbook,
    run_handbook,
    run_suites,
)

__all__ = ["API_KEY_ENV", "add_eval_commands", "render_history", "render_run"]

API_KEY_ENV = "ENCLAVE_EVAL_API_KEY"
_VERSION_HEADERS = ["prompt_version", "model", "config_version"]
T = TypeVar("T")
_SHOWN_FAILURES = 10


class _CannotRun(Exception):
    """The evaluation cannot start; the message says what to fix."""


def _config_dir() -> Path:
    # The folder the settings' relative paths resolve against (see core.settings).
    return Path(os.environ.get("ENCLAVE_CONFIG_DIR", ".")).resolve()


def _with_store(settings: Settings, work: Callable[[EvalStore], Awaitable[T]]) -> T:
    from core.db import Database, check_schema

    async def main() -> T:
        db = Database.from_settings(settings)
        try:
            async with db.reading() as connection:
                await check_schema(connection)
            return await work(EvalStore(db))
        finally:
            await db.dispose()

    return asyncio.run(main())


async def _nothing(store: EvalStore) -> None:
    return None


def _api_key(args: argparse.Namespace) -> str:
    if args.api_key_file is not None:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"--api-key-file {args.api_key_file}: {exc.strerror}."
            raise _CannotRun(msg) from exc
        if not key:
            msg = f"--api-key-file {args.api_key_file} is empty."
            raise _CannotRun(msg)
        return key
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        msg = (
            f"no API key: pass --api-key-file or set {API_KEY_ENV} (a staff or tenant_admin "
            "key of the tenant to evaluate: `enclave keys create --name eval --role staff`)."
        )
        raise _CannotRun(msg)
    return key


def _base_url(settings: Settings, given: str | None) -> str:
    url = (given or f"http://{settings.api.host}:{settings.api.port}").rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def _tenant(base_url: str, api_key: str) -> str:
    import httpx

    try:
        response = httpx.get(
            f"{base_url}/me", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        msg = f"cannot reach the API at {base_url} ({type(exc).__name__}); is the stack up?"
        raise _CannotRun(msg) from exc
    if response.status_code in (401, 403):
        msg = f"the API at {base_url} refused the key (HTTP {response.status_code})."
        raise _CannotRun(msg)
    if response.status_code != 200:
        msg = f"GET {base_url}/me answered HTTP {response.status_code}."
        raise _CannotRun(msg)
    return str(response.json()["tenant"])


def _model(client: Any, settings: Settings, given: str | None) -> str:
    import openai

    if given:
        return given
    try:
        served = [card.id for card in client.models.list().data]
    except openai.APIError as exc:
        msg = f"GET /v1/models failed ({type(exc).__name__}); pass --model to skip it."
        raise _CannotRun(msg) from exc
    preferred = settings.llm.primary.served_name
    if preferred in served or not served:
        return preferred
    return str(served[0])


def _progress(dataset: str, done: int, total: int) -> None:
    print(f"\r{dataset}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr)


def _percent(value: Any) -> str:
    return f"{float(value) * 100:.0f}%"


def render_run(run: EvalRun, step: Step | None) -> str:
    """One finished run: its score and versions, the step it made, and its failed cases."""
    lines = [
        _table(
            ["dataset", "tenant", "cases", "passed", "score", *_VERSION_HEADERS],
            [
                [
                    run.dataset,
                    run.tenant,
                    str(run.cases),
                    str(run.passed),
                    f"{run.score:.3f}",
                    *(v or "-" for v in run.versions().values()),
                ]
            ],
        )
    ]
    details = run.details
    if "mean_completion_tokens" in details:
        lines.append(
            f"  mean completion tokens {details['mean_completion_tokens']}, "
            f"degraded retrieval {_percent(details.get('degraded_share', 0))}, "
            f"fallback {_percent(details.get('fallback_share', 0))}"
        )
    figures = run.figures()
    if figures:
        lines.append("  " + ", ".join(f"{name} {value:.3f}" for name, value in figures.items()))
    if step is not None:
        lines.append(f"  {_marker(step)} step: {step.describe()} (since {step.previous_id})")
    lines.extend(f"  note: {note}" for note in details.get("notes", []))
    failed = [(cid, c) for cid, c in details.get("cases", {}).items() if not c.get("passed")]
    for case_id, case in failed[:_SHOWN_FAILURES]:
        lines.append(f"  failed {case_id}: {'; '.join(case.get('failures') or ['-'])}")
    if len(failed) > _SHOWN_FAILURES:
        lines.append(f"  … and {len(failed) - _SHOWN_FAILURES} more failed cases")
    return "\n".join(lines)


def _marker(step: Step) -> str:
    return "▲" if step.delta > 0 else "▼"


# Short column headers for the answer figures in the history table.
_FIGURE_HEADERS = {
    "hint_correctness": "hint",
    "citation_correctness": "cite",
    "loop_rate": "loops",
    "answer_or_quote_correctness": "ans|quote",
}


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def render_history(history: Sequence[tuple[EvalRun, Step | None]]) -> str:
    """Stored runs as a table, newest first; a step is marked ▲/▼ with what changed."""
    if not history:
        return "No evaluation runs stored yet: run `enclave eval run`."
    tenants = {run.tenant for run, _ in history}
    shown = [f for f in FIGURES if any(f in run.figures() for run, _ in history)]
    headers = [
        "time (UTC)",
        "dataset",
        *(["tenant"] if len(tenants) > 1 else []),
        *_VERSION_HEADERS,
        "score",
        "passed",
        *(_FIGURE_HEADERS[f] for f in shown),
        "step",
    ]
    rows = [
        [
            run.started_at.strftime("%Y-%m-%d %H:%M"),
            run.dataset,
            *([run.tenant] if len(tenants) > 1 else []),
            *(v or "-" for v in run.versions().values()),
            f"{run.score:.3f}",
            f"{run.passed}/{run.cases}",
            *(_figure(run, f) for f in shown),
            "" if step is None else f"{_marker(step)} {step.describe()}",
        ]
        for run, step in history
    ]
    return _table(headers, rows)


def _figure(run: EvalRun, name: str) -> str:
    value = run.figures().get(name)
    return "-" if value is None else f"{value:.2f}"


def _stored_name(name: str, slice_: str) -> str:
    """A slice is its own series (its steps compare it with itself): ``handbook:held-back``."""
    return name if name != "handbook" or slice_ == "all" else f"{name}:{slice_}"


def _run_dataset(
    name: str, args: argparse.Namespace, asker: OpenAIAsker, config_dir: Path
) -> DatasetRun:
    if name == "handbook":
        path = args.handbook_file or config_dir / "index" / "samples" / "handbook_eval.jsonl"
        cases = load_handbook(Path(path), limit=args.limit, slice_=args.slice)
        return run_handbook(
            asker,
            cases,
            knowledge_base=args.knowledge_base,
            max_tokens=args.max_tokens,
            progress=_progress,
        )
    suites_dir = args.suites_dir or config_dir / "prompts" / "suites"
    return run_suites(asker, Path(suites_dir), limit=args.limit, progress=_progress)


def _eval_run(settings: Settings, args: argparse.Namespace) -> int:
    from openai import OpenAI

    datasets = list(dict.fromkeys(args.dataset or DATASETS))
    api_key = _api_key(args)
    _with_store(settings, _nothing)  # a schema problem stops the run before it asks anything
    base_url = _base_url(settings, args.base_url)
    tenant = _tenant(base_url, api_key)
    # Retries ride out rate limits (429 with Retry-After) on long datasets.
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=5, timeout=180.0)
    asker = OpenAIAsker(client, _model(client, settings, args.model))
    failing = False
    stored: list[dict[str, Any]] = []
    for name in datasets:
        result = _run_dataset(name, args, asker, _config_dir())
        run = result.to_eval_run(tenant)
        run = replace(run, dataset=_stored_name(name, args.slice))

        async def record(store: EvalStore, run: EvalRun = run) -> Step | None:
            await store.record(run)
            latest = await store.history(tenant=run.tenant, dataset=run.dataset, limit=1)
            return latest[0][1] if latest and latest[0][0].id == run.id else None

        step = _with_store(settings, record)
        stored.append(run_document(run, step))
        if not args.json:
            print(render_run(run, step))
        if (name == "suites" and run.passed < run.cases) or (
            name == "handbook" and _below_floors(run, args)
        ):
            failing = True
    if args.json:
        print(json.dumps(stored, indent=2))
    return 1 if failing else 0


def _below_floors(run: EvalRun, args: argparse.Namespace) -> bool:
    figures = run.figures()
    below = bool(run.score < args.min_score)
    for name, floor in (
        ("hint_correctness", args.min_hint),
        ("citation_correctness", args.min_citation),
        ("answer_or_quote_correctness", args.min_answer_or_quote),
    ):
        if floor > 0 and figures.get(name, 0.0) < floor:
            print(f"enclave eval: {name} {figures.get(name, 0.0):.3f} < {floor}", file=sys.stderr)
            below = True
    loop_rate = figures.get("loop_rate", 0.0)
    if args.max_loop_rate < 1 and loop_rate > args.max_loop_rate:
        print(f"enclave eval: loop_rate {loop_rate:.3f} > {args.max_loop_rate}", file=sys.stderr)
        below = True
    return below


def _eval_report(settings: Settings, args: argparse.Namespace) -> int:
    history = _with_store(
        settings,
        lambda store: store.history(tenant=args.tenant, dataset=args.dataset, limit=args.last),
    )
    if args.json:
        print(json.dumps([run_document(run, step) for run, step in history], indent=2))
    else:
        print(render_history(history))
    return 0


def _guarded(handler: Callable[[Settings, argparse.Namespace], int]) -> Any:
    def run(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return handler(settings, args)
        except (_CannotRun, EvalAborted, FileNotFoundError) as exc:
            print(f"enclave eval: {exc}", file=sys.stderr)
            return 2
        except EnclaveError as exc:
            print(f"enclave eval: {exc.detail}", file=sys.stderr)
            return 2

    return run


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        msg = f"must be between 1 and {MAX_LIMIT}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _tokens(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4096:
        msg = "must be between 1 and 4096"
        raise argparse.ArgumentTypeError(msg)
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        msg = "must be between 0 and 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_eval_commands(commands: Any) -> None:
    """Register ``enclave eval run|report``."""
    evals = commands.add_parser(
        "eval", help="curated datasets against the live stack; scores over time"
    ).add_subparsers(dest="eval_command", required=True)
    run = evals.add_parser("run", help="run datasets against the stack and store the scores")
    run.add_argument(
        "--dataset",
        action="append",
        choices=DATASETS,
        help="a dataset to run (repeatable; default: all)",
    )
    run.add_argument("--limit", type=_limit, help="at most this many cases of each dataset")
    run.add_argument("--base-url", help="the API's URL (default: http://<api.host>:<api.port>/v1)")
    run.add_argument(
        "--api-key-file", type=Path, help=f"file with the API key (else {API_KEY_ENV})"
    )
    run.add_argument(
        "--knowledge-base", default="handbook", help="knowledge base the handbook set asks"
    )
    run.add_argument("--model", help="model to ask (default: the primary model served)")
    run.add_argument(
        "--max-tokens", type=_tokens, default=MAX_TOKENS, help="answer budget of handbook questions"
    )
    run.add_argument(
        "--min-score",
        type=_share,
        default=0.0,
        help="exit 1 when the handbook score is below this (default 0: never)",
    )
    for flag, what in (
        ("--min-hint", "hint correctness"),
        ("--min-citation", "citation correctness"),
        ("--min-answer-or-quote", "answer-or-quote correctness"),
    ):
        run.add_argument(
            flag, type=_share, default=0.0, help=f"exit 1 when the handbook {what} is below this"
        )
    run.add_argument(
        "--max-loop-rate",
        type=_share,
        default=1.0,
        help="exit 1 when more handbook answers than this share loop (default 1: never)",
    )
    run.add_argument(
        "--slice",
        choices=SLICES,
        default="all",
        help="handbook cases to ask: all, the tuning slice, or the held-back slice (every "
        "fifth case, never used for tuning; stored as its own dataset, handbook:held-back)",
    )
    run.add_argument("--handbook-file", type=Path, help="the handbook QA set (JSON lines)")
    run.add_argument("--suites-dir", type=Path, help="folder of prompt suites (*.yaml)")
    run.add_argument("--json", action="store_true", help="print the stored runs as JSON")
    run.set_defaults(handler=_guarded(_eval_run))
    report = evals.add_parser("report", help="stored runs over time, with score steps marked")
    report.add_argument(
        "--dataset",
        choices=[*DATASETS, *(f"handbook:{s}" for s in SLICES if s != "all")],
        help="only this dataset",
    )
    report.add_argument("--tenant", help="only this tenant's runs (default: every tenant's)")
    report.add_argument("--last", type=_limit, default=20, help="how many runs (newest first)")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(handler=_guarded(_eval_report))
