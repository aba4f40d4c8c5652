"""Latency of the guard stages on ~300-character messages, in-process and through the stack.

In-process: each stage alone (PII + NER in one spaCy pass, sentence embedding, intent
head, injection head + rules, the reply's pattern scan), p50/p99 over the same messages.
Through the stack (``--stack URL``): the guard timings the API records in each response's
lineage (PII scan and classification run concurrently behind Serve handles).

    python -m benchmarks.guard_bench                         # in-process stages
    python -m benchmarks.guard_bench --stack http://127.0.0.1:8000

Writes the section between the guard-bench markers of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.report import git_commit, machine_info, update_readme
from core.settings import load_settings
from models.classifier_training import ENCODER_MODEL_NAME
from models.encoder import SentenceEncoder
from models.injection import INJECTION_MODEL_NAME
from models.injection.rules import rule_hits
from models.intent import INTENT_MODEL_NAME
from models.linear_head import TextHead
from models.pii.pattern_scanner import PatternScanner
from models.pii.presidio_scanner import PresidioScanner
from models.store import ModelStore
from serving.runtime_env import offline_environment

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "models" / "pii" / "data" / "pii_corpus.jsonl"
MARKERS = ("<!-- guard-bench:start -->", "<!-- guard-bench:end -->")


def messages(count: int, length: int = 300) -> list[str]:
    """Deterministic ~300-character staff messages built from the PII corpus sentences."""
    rows = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines() if line.strip()]
    out: list[str] = []
    index = 0
    while len(out) < count:
        text = ""
        while len(text) < length - 40:
            text = (text + " " + rows[index % len(rows)]).strip()
            index += 1
        out.append(text[: length + 40])
    return out


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2)}


def time_stage(
    fn: Callable[[str], Any], texts: Sequence[str], warmup: int = 10
) -> dict[str, float]:
    """Per-call latency of ``fn`` over ``texts``."""
    for text in texts[:warmup]:
        fn(text)
    samples = []
    for text in texts:
        started = time.perf_counter()
        fn(text)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def in_process(texts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each guard stage on its own, one message at a time."""
    import os

    settings = load_settings(config_dir=REPO)
    os.environ.update(offline_environment(settings))
    store = ModelStore(settings.paths.model_store)
    presidio = PresidioScanner(store.path_of(settings.pii.spacy_store_name), settings.pii)
    presidio.load()
    encoder = SentenceEncoder(store.path_of(ENCODER_MODEL_NAME), threads=1)
    encoder.load()
    intent = TextHead.load(store.path_of(INTENT_MODEL_NAME) / "head.json")
    injection = TextHead.load(store.path_of(INJECTION_MODEL_NAME) / "head.json")
    patterns = PatternScanner(settings.pii)
    vectors = {t: encoder.encode([t]) for t in texts}

    def whole(text: str) -> None:
        presidio.scan([text])
        embedding = encoder.encode([text])
        intent.predict([text], embedding)
        injection.probabilities([text], embedding)
        rule_hits(text)

    return {
        "PII + NER (Presidio, one spaCy pass)": time_stage(lambda t: presidio.scan([t]), texts),
        "sentence embedding (MiniLM)": time_stage(lambda t: encoder.encode([t]), texts),
        "intent head": time_stage(lambda t: intent.predict([t], vectors[t]), texts),
        "injection head + rules": time_stage(
            lambda t: (injection.probabilities([t], vectors[t]), rule_hits(t)), texts
        ),
        "reply pattern scan (per 300 chars)": time_stage(patterns.find, texts),
        "all guard stages, sequential": time_stage(whole, texts),
    }


def through_stack(base_url: str, texts: Sequence[str], model: str) -> dict[str, dict[str, float]]:
    """Guard timings recorded in the lineage of real requests (max_tokens=1)."""
    import httpx

    samples: dict[str, list[float]] = {"pii_ms": [], "classify_ms": [], "guards_ms": []}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for index, text in enumerate(texts):
            body = {
                "model": model,
                "max_tokens": 1,
                "messages": [{"role": "user", "content": text}],
            }
            response = client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            if index < 10:
                continue  # warm-up
            timings = response.json()["enclave"]["timings_ms"]
            for key, values in samples.items():
                values.append(timings[key] / 1000)
    names = {
        "pii_ms": "PII + NER via Serve handle",
        "classify_ms": "intent + injection via Serve handle",
        "guards_ms": "guard stage (both, concurrently)",
    }
    return {names[k]: percentiles(v) for k, v in samples.items()}


def section(results: dict[str, dict[str, dict[str, float]]], count: int, command: str) -> str:
    """The README section."""
    machine = machine_info()
    lines = [
        MARKERS[0],
        "## Guard pipeline latency",
        "",
        f"Machine: {machine.get('cpu_model', '?')}, {machine.get('usable_cpus', '?')} cores, "
        f"{machine.get('ram_gib', '?')} GiB. Date: "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}. Commit: {git_commit(REPO)}.",
        f"Command: `{command}`. {count} messages of ~300 characters built from the PII "
        "corpus (most carry several PII values).",
        "",
    ]
    for title, table in results.items():
        lines += [f"**{title}**", "", "| stage | p50 (ms) | p99 (ms) |", "| --- | ---: | ---: |"]
        lines += [
            f"| {stage} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} |" for stage, v in table.items()
        ]
        lines.append("")
    lines += [
        "Yardstick (DESIGN.md): all guard stages together ≤ 40 ms p50 on 2 cores; one "
        "Presidio scanner in LLM Guard averages 177 ms on a 4-vCPU server.",
        MARKERS[1],
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the guard benchmark and update benchmarks/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="messages to time")
    parser.add_argument("--stack", help="also measure through a running stack at this URL")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args(argv)
    texts = messages(args.count)
    results = {"In-process, one message at a time": in_process(texts)}
    if args.stack:
        results["Through the running stack (lineage timings)"] = through_stack(
            args.stack, texts, args.model
        )
    for title, table in results.items():
        print(title)
        for stage, value in table.items():
            print(f"  {stage:<42} p50 {value['p50_ms']:7.1f} ms   p99 {value['p99_ms']:7.1f} ms")
    command = "python -m benchmarks.guard_bench" + (f" --stack {args.stack}" if args.stack else "")
    update_readme(REPO / "benchmarks" / "README.md", section(results, args.count, command), MARKERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
