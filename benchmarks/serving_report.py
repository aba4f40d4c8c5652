"""Tables, the equal-work check, the TTFT breakdown and plots of the serving benchmark."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.load import LevelResult
from benchmarks.report import README_END, README_START

__all__ = [
    "ENCLAVE",
    "RAW",
    "SideLevel",
    "Table",
    "markdown_section",
    "plot",
    "side_level",
    "table",
    "ttft_breakdown",
]

RAW, ENCLAVE = "raw-vllm", "enclave"
# Both sides' usage.prompt_tokens must agree per question within this fraction.
EQUAL_WORK_TOLERANCE = 0.02
THROUGHPUT_TARGET = 0.95
TTFT_OVERHEAD_TARGET_MS = 50.0


@dataclass(slots=True)
class SideLevel:
    """One target at one level, summarised."""

    concurrency: int
    requests: int
    failed: int
    duration_s: float
    output_tok_s: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    mean_prompt_tokens: float
    mean_output_tokens: float
    engine_cpu_s: float
    other_cpu_s: float
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    timings_ms: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def output_tokens(self) -> float:
        """Output tokens of the level's finished requests."""
        return self.output_tok_s * self.duration_s

    def cpu_per_1k(self, which: str) -> float | None:
        """CPU seconds per 1,000 output tokens: ``engine`` or ``other``."""
        tokens = self.output_tokens
        if not tokens:
            return None
        spent = self.engine_cpu_s if which == "engine" else self.other_cpu_s
        return 1000 * spent / tokens


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def side_level(level: LevelResult, cpu: tuple[float, float]) -> SideLevel:
    """Summarise a level's requests and the CPU its server spent."""
    ok = [r for r in level.requests if r.ok]
    ttfts = [1000 * r.ttft_s for r in ok if r.ttft_s is not None]
    return SideLevel(
        concurrency=level.concurrency,
        requests=len(level.requests),
        failed=len(level.requests) - len(ok),
        duration_s=round(level.duration_s, 3),
        output_tok_s=round(level.output_throughput, 2),
        ttft_p50_ms=_percentile(ttfts, 50),
        ttft_p99_ms=_percentile(ttfts, 99),
        mean_prompt_tokens=statistics.fmean([r.prompt_tokens for r in ok]) if ok else 0.0,
        mean_output_tokens=statistics.fmean([r.completion_tokens for r in ok]) if ok else 0.0,
        engine_cpu_s=round(cpu[0], 2),
        other_cpu_s=round(cpu[1], 2),
        prompt_tokens={r.key: r.prompt_tokens for r in ok},
        timings_ms=[
            {k: float(v) for k, v in (r.lineage.get("timings_ms") or {}).items()}
            | {"client_ttft_ms": round(1000 * (r.ttft_s or 0.0), 2)}
            for r in ok
            if r.lineage
        ],
        errors=sorted({r.error for r in level.requests if r.error})[:5],
    )


@dataclass(slots=True)
class Table:
    """The printed/markdown table and the JSON summary rows."""

    text: list[str]
    markdown: list[str]
    summary: list[dict[str, Any]]


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def equal_work(enclave: SideLevel, raw: SideLevel) -> tuple[int, int, float]:
    """Questions compared, questions whose prompt tokens differ by more than the tolerance,
    and the largest relative difference."""
    common = set(enclave.prompt_tokens) & set(raw.prompt_tokens)
    worst, off = 0.0, 0
    for key in common:
        mine, theirs = enclave.prompt_tokens[key], raw.prompt_tokens[key]
        diff = abs(mine - theirs) / max(1, mine)
        worst = max(worst, diff)
        off += diff > EQUAL_WORK_TOLERANCE
    return len(common), off, worst


def table(
    levels: Sequence[tuple[int, int]], results: Mapping[str, Mapping[tuple[int, int], SideLevel]]
) -> Table:
    """One row per (streams, answer length) with both targets side by side."""
    header = (
        "| Answer tokens | Streams | Requests E/R | Output tok/s Enclave | Output tok/s raw | "
        "Ratio | TTFT p50 E (ms) | TTFT p50 raw (ms) | TTFT overhead p50 (ms) | "
        "Prompt tokens mean E / raw | Equal work (off/compared) | "
        "Engine CPU s/1k tok E / raw | Pipeline CPU s/1k tok E | Pipeline CPU s/request E |"
    )
    rule = "|" + "|".join(["---:"] * 14) + "|"
    markdown = [header, rule]
    summary: list[dict[str, Any]] = []
    for concurrency, output_len in levels:
        enc = results.get(ENCLAVE, {}).get((concurrency, output_len))
        raw = results.get(RAW, {}).get((concurrency, output_len))
        ratio = enc.output_tok_s / raw.output_tok_s if enc and raw and raw.output_tok_s else None
        overhead = (
            enc.ttft_p50_ms - raw.ttft_p50_ms
            if enc and raw and enc.ttft_p50_ms is not None and raw.ttft_p50_ms is not None
            else None
        )
        compared, off, worst = equal_work(enc, raw) if enc and raw else (0, 0, 0.0)
        per_request = (
            enc.other_cpu_s / (enc.requests - enc.failed)
            if enc and enc.requests > enc.failed
            else None
        )
        row = {
            "output_len": output_len,
            "concurrency": concurrency,
            "ratio": ratio,
            "ttft_overhead_p50_ms": overhead,
            "equal_work_compared": compared,
            "equal_work_off": off,
            "equal_work_worst": worst,
            "pipeline_cpu_s_per_request": per_request,
            "enclave": None if enc is None else _brief(enc),
            "raw": None if raw is None else _brief(raw),
        }
        summary.append(row)
        markdown.append(
            f"| {output_len} | {concurrency} | "
            f"{_fmt(enc and enc.requests - enc.failed, 'd') if enc else '—'} / "
            f"{raw.requests - raw.failed if raw else '—'} | "
            f"{_fmt(enc and enc.output_tok_s)} | {_fmt(raw and raw.output_tok_s)} | "
            f"{_fmt(ratio, '.3f')} | {_fmt(enc and enc.ttft_p50_ms)} | "
            f"{_fmt(raw and raw.ttft_p50_ms)} | "
            f"{'—' if overhead is None else f'{overhead:+.1f}'} | "
            f"{_fmt(enc and enc.mean_prompt_tokens)} / {_fmt(raw and raw.mean_prompt_tokens)} | "
            f"{off}/{compared} (max {100 * worst:.1f} %) | "
            f"{_fmt(enc and enc.cpu_per_1k('engine'), '.2f')} / "
            f"{_fmt(raw and raw.cpu_per_1k('engine'), '.2f')} | "
            f"{_fmt(enc and enc.cpu_per_1k('other'), '.2f')} | {_fmt(per_request, '.3f')} |"
        )
    return Table(text=markdown, markdown=markdown, summary=summary)


def _brief(side: SideLevel) -> dict[str, Any]:
    return {
        "requests": side.requests,
        "failed": side.failed,
        "output_tok_s": side.output_tok_s,
        "ttft_p50_ms": side.ttft_p50_ms,
        "ttft_p99_ms": side.ttft_p99_ms,
        "mean_prompt_tokens": side.mean_prompt_tokens,
        "mean_output_tokens": side.mean_output_tokens,
        "engine_cpu_s": side.engine_cpu_s,
        "other_cpu_s": side.other_cpu_s,
        "engine_cpu_per_1k": side.cpu_per_1k("engine"),
        "other_cpu_per_1k": side.cpu_per_1k("other"),
        "errors": side.errors,
    }


def ttft_breakdown(side: SideLevel | None) -> dict[str, float]:
    """Median of each stage timing Enclave reported (``enclave.timings_ms``) at one stream."""
    if side is None or not side.timings_ms:
        return {}
    keys = sorted({key for timings in side.timings_ms for key in timings})
    return {
        key: round(statistics.median([t[key] for t in side.timings_ms if key in t]), 2)
        for key in keys
    }


def markdown_section(meta: Mapping[str, Any], rows: Table, breakdown: Mapping[str, float]) -> str:
    """The README section for this run."""
    machine = meta["machine"]
    lines = [
        README_START,
        "## Serving: Enclave vs the raw vLLM server, equal work",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs "
        f"({machine['usable_cpus']} usable), {machine['ram_gib']} GiB RAM; load average before "
        f"the run {', '.join(f'{x:.2f}' for x in meta['load_before'])}",
        f"- Date (UTC): {meta['created_utc']}",
        f"- Commit: `{meta['git_commit']}`",
        f"- Command: `{meta['command']}`",
        f"- Model: `{meta['model']}`, vLLM {meta['vllm_version']}; raw server: "
        f"`{' '.join(str(a) for a in meta['raw_argv'][1:])}`",
        f"- Workload: {meta['questions']} staff questions (handbook eval set and answerable "
        f"intents); {meta['questions_generated']} reach the engine (the rest are refused or "
        f"blocked by the guards and are not sent to either side), "
        f"{meta['questions_with_documents']} of them with retrieved documents. Streamed, "
        "temperature 0, `ignore_eos`, closed loop (each stream sends its next request when "
        "the last ends), 2 warm-up requests per level; Enclave first, then the raw server.",
        "- Equal work: a probe pass through Enclave reads each question's retrieved passages; "
        "the raw server gets, per question, the same system message rendered by the same code "
        "(`core.prompts.system_message`) with the same passages. `Equal work` counts the "
        f"questions whose `usage.prompt_tokens` differ by more than "
        f"{100 * EQUAL_WORK_TOLERANCE:.0f} % between the two sides.",
        "- CPU: psutil over each process tree, around each level. Engine = the raw server's "
        "whole tree / Enclave's primary LLM replica and its vLLM engine core; pipeline = every "
        "other process of Enclave (API, Serve proxy, guards, PII, retriever, fallback, Ray).",
        f"- Raw results: `{meta.get('json_path', '')}`",
        "",
        *rows.markdown,
        "",
        "![Output tok/s and TTFT p50 vs streams](results/serving.png)",
        "",
    ]
    if breakdown:
        lines += [
            "TTFT at one stream, Enclave's own stage timings (median, ms; `enclave.timings_ms`; "
            "`client_ttft_ms` is what the client saw):",
            "",
            "| stage | ms |",
            "|---|---:|",
            *(f"| {key} | {value:.1f} |" for key, value in breakdown.items()),
            "",
        ]
    if meta.get("flamegraphs"):
        lines += [
            "Flame graphs (py-spy, 32 streams, 256 tokens): "
            + ", ".join(
                f"[{Path(p).name}]({Path(p).relative_to('benchmarks')})"
                for p in meta["flamegraphs"]
            ),
            "",
        ]
    lines.append(README_END)
    return "\n".join(lines) + "\n"


def plot(
    levels: Sequence[tuple[int, int]],
    results: Mapping[str, Mapping[tuple[int, int], SideLevel]],
    path: Path,
    title: str,
) -> None:
    """Output tok/s and TTFT p50 against streams, per answer length, both targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    lengths = sorted({n for _, n in levels})
    streams = sorted({c for c, _ in levels})
    for axis, attr, label in ((left, "output_tok_s", "output tokens/s"),
                              (right, "ttft_p50_ms", "TTFT p50 (ms)")):  # fmt: skip
        for side, style in ((ENCLAVE, "-"), (RAW, "--")):
            for length, marker in zip(lengths, "os^v", strict=False):
                points = [
                    (c, getattr(results[side][(c, length)], attr))
                    for c in streams
                    if (c, length) in results.get(side, {})
                ]
                points = [(x, y) for x, y in points if y is not None]
                if points:
                    axis.plot(*zip(*points, strict=True), marker + style,
                              label=f"{side}, {length} tok")  # fmt: skip
        axis.set_xscale("log", base=2)
        axis.set_xticks(streams, [str(c) for c in streams])
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(label)
        axis.grid(visible=True, alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
