"""Turn serving-benchmark results into a console table, a JSON file, a PNG plot and a README
section, each saying which machine ran them and whether DESIGN.md's yardsticks were met."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENCLAVE",
    "RAW",
    "LevelRow",
    "TargetMetrics",
    "format_table",
    "git_commit",
    "machine_info",
    "markdown_section",
    "plot",
    "summarise",
    "update_readme",
    "write_json",
]

RAW = "raw-vllm"
ENCLAVE = "enclave"

# DESIGN.md, "Performance yardsticks".
THROUGHPUT_RATIO_MIN = 0.95
THROUGHPUT_AT_STREAMS = 32
TTFT_OVERHEAD_P50_MAX_MS = 50.0
# Answers of clearly different length make output tok/s compare unlike workloads.
_LENGTH_MISMATCH = 0.05

README_START = "<!-- serving-bench:start -->"
README_END = "<!-- serving-bench:end -->"
_README_INTRO = """# Benchmarks

Measurements of the Enclave stack, run with `make bench` or `python -m benchmarks.<name>`.
Absolute times on shared machines vary from run to run: compare the ratios measured within
one run. Raw results (JSON) and plots are in `results/`.

"""


@dataclass(frozen=True, slots=True)
class TargetMetrics:
    """The figures of one target (Enclave or raw vLLM) at one concurrency."""

    output_tok_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    tokens_per_request: float
    completed: int
    failed: int

    @classmethod
    def from_vllm(cls, result: Mapping[str, Any]) -> TargetMetrics:
        """Read the figures out of ``vllm.benchmarks.serve.main``'s result dict."""
        completed = int(result["completed"])
        total_output = int(result["total_output_tokens"])
        return cls(
            output_tok_s=float(result["output_throughput"]),
            ttft_p50_ms=float(result["p50_ttft_ms"]),
            ttft_p99_ms=float(result["p99_ttft_ms"]),
            tokens_per_request=total_output / completed if completed else 0.0,
            completed=completed,
            failed=int(result["failed"]),
        )


@dataclass(frozen=True, slots=True)
class LevelRow:
    """Enclave and raw vLLM side by side at one concurrency (either may be missing)."""

    concurrency: int
    num_prompts: int
    enclave: TargetMetrics | None
    raw: TargetMetrics | None

    @property
    def ratio(self) -> float | None:
        """Output tok/s of Enclave divided by raw vLLM's."""
        if self.enclave is None or self.raw is None or self.raw.output_tok_s == 0:
            return None
        return self.enclave.output_tok_s / self.raw.output_tok_s

    @property
    def ttft_overhead_p50_ms(self) -> float | None:
        """Median TTFT of Enclave minus raw vLLM's, in ms."""
        if self.enclave is None or self.raw is None:
            return None
        return self.enclave.ttft_p50_ms - self.raw.ttft_p50_ms


def summarise(
    levels: Sequence[tuple[int, int]], runs: Mapping[str, Mapping[int, Mapping[str, Any]]]
) -> list[LevelRow]:
    """One row per (concurrency, prompts) level from the per-target vLLM results."""

    def metrics(target: str, concurrency: int) -> TargetMetrics | None:
        result = runs.get(target, {}).get(concurrency)
        return None if result is None else TargetMetrics.from_vllm(result)

    return [LevelRow(c, n, enclave=metrics(ENCLAVE, c), raw=metrics(RAW, c)) for c, n in levels]


def machine_info() -> dict[str, Any]:
    """CPU model, CPU counts and RAM of this machine."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
            break
    return {
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kib / 1024**2, 1),
    }


def git_commit(repo: Path) -> str:
    """The checked-out commit, marked when the working tree has uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    return f"{commit} (with uncommitted changes)" if git("status", "--porcelain") else commit


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _pick(metrics: TargetMetrics | None, field: str) -> float | None:
    return None if metrics is None else float(getattr(metrics, field))


def format_table(rows: Sequence[LevelRow]) -> str:
    """A fixed-width console table: one line per concurrency."""
    header = (
        f"{'streams':>7} {'prompts':>7} | {'tok/s enc':>9} {'tok/s raw':>9} {'ratio':>6} | "
        f"{'TTFT50 enc':>10} {'TTFT50 raw':>10} {'TTFT99 enc':>10} {'TTFT99 raw':>10} "
        f"{'overhead50':>10} | {'tok/req enc':>11} {'tok/req raw':>11} {'failed e/r':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        failed = (
            f"{_num(_pick(row.enclave, 'failed'), '.0f')}/{_num(_pick(row.raw, 'failed'), '.0f')}"
        )
        lines.append(
            f"{row.concurrency:>7} {row.num_prompts:>7} | "
            f"{_num(_pick(row.enclave, 'output_tok_s'), '.1f'):>9} "
            f"{_num(_pick(row.raw, 'output_tok_s'), '.1f'):>9} {_num(row.ratio, '.3f'):>6} | "
            f"{_num(_pick(row.enclave, 'ttft_p50_ms'), '.1f'):>10} "
            f"{_num(_pick(row.raw, 'ttft_p50_ms'), '.1f'):>10} "
            f"{_num(_pick(row.enclave, 'ttft_p99_ms'), '.1f'):>10} "
            f"{_num(_pick(row.raw, 'ttft_p99_ms'), '.1f'):>10} "
            f"{_num(row.ttft_overhead_p50_ms, '+.1f'):>10} | "
            f"{_num(_pick(row.enclave, 'tokens_per_request'), '.1f'):>11} "
            f"{_num(_pick(row.raw, 'tokens_per_request'), '.1f'):>11} {failed:>10}"
        )
    lines.append("TTFT columns in ms; overhead50 = TTFT p50 Enclave − raw vLLM.")
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def yardstick_lines(rows: Sequence[LevelRow]) -> list[str]:
    """DESIGN.md's yardsticks and whether this run's figures meet them."""
    lines: list[str] = []
    at_32 = next((r for r in rows if r.concurrency == THROUGHPUT_AT_STREAMS), None)
    if at_32 is None or at_32.ratio is None:
        lines.append(
            f"Output throughput ≥ {THROUGHPUT_RATIO_MIN}× raw vLLM at {THROUGHPUT_AT_STREAMS} "
            "streams: not measured in this run."
        )
    else:
        lines.append(
            f"Output throughput ≥ {THROUGHPUT_RATIO_MIN}× raw vLLM at {THROUGHPUT_AT_STREAMS} "
            f"streams: {at_32.ratio:.3f}× — {_verdict(at_32.ratio >= THROUGHPUT_RATIO_MIN)}."
        )
    for row in rows:
        overhead = row.ttft_overhead_p50_ms
        if overhead is not None:
            lines.append(
                f"TTFT overhead p50 ≤ {TTFT_OVERHEAD_P50_MAX_MS:.0f} ms at {row.concurrency} "
                f"stream(s): {overhead:+.1f} ms — "
                f"{_verdict(overhead <= TTFT_OVERHEAD_P50_MAX_MS)}."
            )
    return lines


def _caveat_lines(rows: Sequence[LevelRow]) -> list[str]:
    lines: list[str] = []
    for row in rows:
        if row.enclave is None or row.raw is None:
            continue
        enc, raw = row.enclave.tokens_per_request, row.raw.tokens_per_request
        if raw and abs(enc - raw) / raw > _LENGTH_MISMATCH:
            lines.append(
                f"At {row.concurrency} stream(s) answers averaged {enc:.1f} output tokens "
                f"through Enclave and {raw:.1f} through raw vLLM: the output tok/s figures "
                "compare answers of different length."
            )
        if row.enclave.failed or row.raw.failed:
            lines.append(
                f"At {row.concurrency} stream(s) requests failed: Enclave {row.enclave.failed}, "
                f"raw vLLM {row.raw.failed} (see the JSON file)."
            )
    return lines


def _workload_line(workload: Mapping[str, Any]) -> str:
    if workload.get("dataset") == "staff":
        prompts = (
            "staff questions (handbook eval set and answerable intents, "
            "`benchmarks/results/raw/staff-prompts.jsonl`), shuffled with the seed"
        )
    else:
        prompts = f"random prompts of {workload['input_len']} tokens (before the chat template)"
    answers = f"{workload['output_len']} output tokens asked with `ignore_eos`"
    warmups = f"{workload['warmups']} warm-up request(s) per level"
    return (
        f"- Workload: `vllm.benchmarks.serve`, backend `openai-chat`, streamed; {prompts}, "
        f"{answers}, seed {workload['seed']}, {warmups}; both targets got the same prompts, "
        "one after the other, never at once. Enclave prepends its system prompt (about 100 "
        "tokens) and runs its guards; the raw server gets the same system-prompt text at the "
        "top of each prompt, so both prefill about the same and the gap is the pipeline's"
    )


def markdown_section(meta: Mapping[str, Any], rows: Sequence[LevelRow]) -> str:
    """The README section: machine, date, commit, command, results table and yardsticks."""
    machine = meta["machine"]
    workload = meta["workload"]
    lines = [
        README_START,
        "## Serving: Enclave vs the raw vLLM OpenAI server",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs "
        f"({machine['usable_cpus']} usable), {machine['ram_gib']} GiB RAM",
        f"- Date (UTC): {meta['created_utc']}",
        f"- Commit: `{meta['git_commit']}`",
        f"- Command: `{meta['command']}`",
        f"- Model: `{meta['model']['served_name']}` (store entry "
        f"`{meta['model']['store_name']}`), profile `{meta['profile']}`, vLLM "
        f"{meta['vllm_version']}",
        _workload_line(workload),
        f"- Raw vLLM server: `python {shlex.join(meta['servers'][RAW]['argv'][1:])}`",
        f"- Raw results: `{meta['json_path']}`",
        "",
        "| Streams | Prompts | Output tok/s Enclave | Output tok/s raw | Ratio (Enclave/raw) "
        "| TTFT p50 Enclave (ms) | TTFT p50 raw (ms) | TTFT p99 Enclave (ms) "
        "| TTFT p99 raw (ms) | TTFT overhead p50 (ms) | Output tokens/request Enclave / raw |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.concurrency} | {row.num_prompts} "
            f"| {_num(_pick(row.enclave, 'output_tok_s'), '.1f')} "
            f"| {_num(_pick(row.raw, 'output_tok_s'), '.1f')} | {_num(row.ratio, '.3f')} "
            f"| {_num(_pick(row.enclave, 'ttft_p50_ms'), '.1f')} "
            f"| {_num(_pick(row.raw, 'ttft_p50_ms'), '.1f')} "
            f"| {_num(_pick(row.enclave, 'ttft_p99_ms'), '.1f')} "
            f"| {_num(_pick(row.raw, 'ttft_p99_ms'), '.1f')} "
            f"| {_num(row.ttft_overhead_p50_ms, '+.1f')} "
            f"| {_num(_pick(row.enclave, 'tokens_per_request'), '.1f')} / "
            f"{_num(_pick(row.raw, 'tokens_per_request'), '.1f')} |"
        )
    lines += ["", "![Output tok/s and TTFT p50 vs concurrency](results/serving.png)", ""]
    lines += ["Yardsticks (DESIGN.md, “Performance yardsticks”), as measured in this run:", ""]
    lines += [f"- {line}" for line in yardstick_lines(rows)]
    caveats = _caveat_lines(rows)
    if caveats:
        lines += ["", "Notes:", ""] + [f"- {line}" for line in caveats]
    lines.append(README_END)
    return "\n".join(lines) + "\n"


def update_readme(
    path: Path, section: str, markers: tuple[str, str] = (README_START, README_END)
) -> None:
    """Replace the marked section of ``path`` (append it, or create the file, if missing)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else _README_INTRO
    start, end = text.find(markers[0]), text.find(markers[1])
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(markers[1]) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def _json_default(value: object) -> object:
    # numpy scalars in vLLM's result dict
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, Path):
        return str(value)
    msg = f"not JSON serialisable: {type(value).__name__}"
    raise TypeError(msg)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write the raw results, pretty-printed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=True, default=_json_default)
    path.write_text(text + "\n", encoding="utf-8")


def plot(rows: Sequence[LevelRow], path: Path, title: str) -> None:
    """Two panels: output tok/s and TTFT p50 against concurrency, Enclave and raw vLLM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((left, "output_tok_s", "output tokens/s"), (right, "ttft_p50_ms", "TTFT p50 (ms)"))
    for axis, field, label in panels:
        for name, style in ((ENCLAVE, "o-"), (RAW, "s--")):
            points = [
                (r.concurrency, _pick(r.enclave if name == ENCLAVE else r.raw, field)) for r in rows
            ]
            xs = [x for x, y in points if y is not None]
            ys = [y for _, y in points if y is not None]
            if xs:
                axis.plot(xs, ys, style, label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks([r.concurrency for r in rows], [str(r.concurrency) for r in rows])
        axis.set_xlabel("concurrent streams")
        axis.set_ylabel(label)
        axis.grid(visible=True, alpha=0.3)
        axis.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
