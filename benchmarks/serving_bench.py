"""Output tokens/s, time to first token and CPU: Enclave vs the raw vLLM server, equal work.

Both serve the same prepared model folder with the same engine options
(``models.llm.vllm_engine.engine_options``), one after the other (never at once: the CPU is
shared), driven by the same load generator (``benchmarks.load``) with staff questions.
Enclave runs first: a probe pass reads, per question, the passages Enclave retrieved and the
prompt tokens its engine got; the raw server then receives, per question, the same system
message with the same passages (``benchmarks.equal_work``), and the run checks that both
sides' ``usage.prompt_tokens`` agree. CPU seconds of each process tree are taken around
every level: the engine's apart from everything else in the stack.

    python -m benchmarks.serving_bench                 # the full run (make bench)
    python -m benchmarks.serving_bench --concurrency 1,32 --output-lens 256 --flamegraphs

Run it from the repository root with the project's virtualenv, after ``make models``.
Writes ``benchmarks/results/serving-<stamp>.json``, plots, and the README section.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.cpu import CpuSnapshot, cpu_snapshot, find_processes
from benchmarks.equal_work import Grounded, probe_questions, raw_messages
from benchmarks.load import ChatJob, LevelResult, run_level
from benchmarks.report import git_commit, machine_info, update_readme, write_json
from benchmarks.servers import ServerError, ServerSpec, ensure_port_free, free_port, running
from benchmarks.serving_report import (
    ENCLAVE,
    RAW,
    SideLevel,
    markdown_section,
    plot,
    side_level,
    table,
    ttft_breakdown,
)
from core.errors import ConfigurationError, ModelStoreError
from core.prompts import global_layer, load_repo_prompt, resolve
from core.settings import Settings, load_settings
from models.llm.vllm_engine import server_arguments
from models.store import ModelStore
from serving.runtime_env import ensure_canary_token, offline_environment

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "benchmarks"
LOOPBACK = "127.0.0.1"
_ANSWERED_INTENTS = {"it_support", "hr_policy", "document_question", "code_help", "writing_help"}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if not values or min(values) < 1:
        msg = f"expected positive integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving_bench",
        description="Enclave vs the raw vLLM server on equal work: tok/s, TTFT, CPU.",
    )
    parser.add_argument("--profile", default="default", help="settings profile")
    parser.add_argument(
        "--concurrency", type=_int_list, default=[1, 8, 32, 64], help="streams per level"
    )
    parser.add_argument(
        "--output-lens", type=_int_list, default=[64, 256], help="answer lengths (tokens)"
    )
    parser.add_argument(
        "--num-prompts-scale",
        type=float,
        default=1.0,
        help="requests per level = ceil(scale * max(8, 2 * streams))",
    )
    parser.add_argument("--warmups", type=int, default=2, help="warm-up requests per level")
    parser.add_argument("--seed", type=int, default=0, help="question sample and order")
    parser.add_argument(
        "--questions", type=int, default=96, help="staff questions sampled (with the seed)"
    )
    parser.add_argument(
        "--only", choices=("raw", "enclave", "both"), default="both", help="targets to run"
    )
    parser.add_argument(
        "--flamegraphs",
        action="store_true",
        help="after the measured levels, profile Enclave's API and engine replicas with "
        "py-spy under 32 streams (an extra, unmeasured level) into benchmarks/results/",
    )
    parser.add_argument("--flamegraph-tag", default="", help="suffix of the SVG names")
    parser.add_argument("--enclave-port", type=int, default=None, help="Enclave's API port")
    parser.add_argument("--ready-timeout", type=float, default=400.0, help="seconds")
    parser.add_argument("--no-readme", action="store_true", help="do not touch the README")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.num_prompts_scale <= 0:
        parser.error("--num-prompts-scale must be positive")
    return args


def num_prompts(concurrency: int, scale: float) -> int:
    """Requests sent at one level: enough to keep every stream busy twice."""
    return max(1, math.ceil(scale * max(8, 2 * concurrency)))


def staff_questions() -> list[str]:
    """Staff questions the portal answers: the handbook eval set and answerable intents."""
    import json

    questions = [
        json.loads(line)["question"]
        for line in (REPO_ROOT / "index/samples/handbook_eval.jsonl").read_text().splitlines()
        if line.strip()
    ]
    for line in (REPO_ROOT / "models/intent/data/intents.jsonl").read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("label") in _ANSWERED_INTENTS:
            questions.append(row["text"])
    return questions


def _model_dir(settings: Settings) -> Path:
    primary = settings.llm.primary
    if primary.engine != "vllm":
        msg = f"llm.primary.engine is {primary.engine!r}; this benchmark needs 'vllm'."
        raise ConfigurationError(msg)
    folder = ModelStore(settings.paths.model_store).path_of(primary.store_name)
    if not (folder / "config.json").is_file():
        msg = f"Model folder {folder} has no config.json. Run `make models` to prepare it."
        raise ModelStoreError(msg)
    return folder


def _raw_spec(
    settings: Settings, model_dir: Path, args: argparse.Namespace, log: Path
) -> ServerSpec:
    """The raw vLLM OpenAI server, with the engine options Enclave's engine uses."""
    port = free_port(LOOPBACK)
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        *server_arguments(settings.llm.primary, model_dir),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    env = {**os.environ, **offline_environment(settings)}
    return ServerSpec(
        name=RAW,
        host=LOOPBACK,
        port=port,
        argv=argv,
        env=env,
        cwd=REPO_ROOT,
        ready_url=f"http://{LOOPBACK}:{port}/v1/models",
        ready_timeout_s=args.ready_timeout,
        stop_timeout_s=30.0,
        log_path=log,
    )


def _enclave_spec(
    settings: Settings, args: argparse.Namespace, log: Path
) -> tuple[ServerSpec, str]:
    """``enclave serve`` from this virtualenv, and a staff + tenant-admin key for it."""
    executable = Path(sys.executable).parent / "enclave"
    if not executable.is_file():
        msg = f"{executable} not found: run the benchmark with the project's venv."
        raise ServerError(msg)
    env = {
        **os.environ,
        "ENCLAVE_PROFILE": args.profile,
        # Serving is measured, not the limits: room for every request the benchmark sends.
        "ENCLAVE_LIMITS__USER_REQUESTS_PER_MINUTE": "1000000",
        "ENCLAVE_LIMITS__TENANT_REQUESTS_PER_MINUTE": "1000000",
        "ENCLAVE_LIMITS__USER_TOKENS__TOKENS": "1000000000",
        "ENCLAVE_LIMITS__TENANT_TOKENS__TOKENS": "1000000000",
        # The raw server runs no canary; a canary run mid-level would be extra load.
        "ENCLAVE_CANARY__ENABLED": "false",
        # Both sides generate exactly max_tokens (ignore_eos); the loop guard would end
        # Enclave's forced, looping answers early and compare unequal output work.
        "ENCLAVE_GUARD__CUT_REPETITION": "false",
    }
    created = subprocess.run(
        [str(executable), "keys", "create", "--name", "serving benchmark",
         "--role", "staff", "--role", "tenant_admin"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    port = args.enclave_port or settings.api.port
    env["ENCLAVE_API__PORT"] = str(port)
    spec = ServerSpec(
        name=ENCLAVE,
        host=LOOPBACK,
        port=port,
        argv=[str(executable), "serve"],
        env=env,
        cwd=REPO_ROOT,
        ready_url=f"http://{LOOPBACK}:{port}/readyz",
        ready_timeout_s=args.ready_timeout,
        stop_timeout_s=60.0,
        log_path=log,
    )
    return spec, key


def _roots(spec: ServerSpec, pid: int, settings: Settings) -> list[int]:
    """The server's process and, for Enclave, Ray's daemons (they leave the launcher's tree)."""
    roots = [pid]
    if spec.name == ENCLAVE:
        roots += [p.pid for p in find_processes(str(settings.paths.ray_dir))]
    return roots


def _snapshot(spec: ServerSpec, pid: int, settings: Settings) -> CpuSnapshot:
    if spec.name == RAW:
        return cpu_snapshot(_roots(spec, pid, settings), all_engine=True)
    return cpu_snapshot(_roots(spec, pid, settings), (":llm_primary",))


def _measure(
    spec: ServerSpec,
    pid: int,
    settings: Settings,
    base_url: str,
    key: str,
    jobs: list[ChatJob],
    concurrency: int,
    output_len: int,
    warmups: int,
) -> tuple[LevelResult, tuple[float, float]]:
    print(f"== {spec.name}: {concurrency} stream(s), {len(jobs)} requests, {output_len} tokens",
          flush=True)  # fmt: skip
    before = _snapshot(spec, pid, settings)
    result = run_level(
        base_url,
        key,
        settings.llm.primary.served_name,
        jobs,
        concurrency=concurrency,
        max_tokens=output_len,
        warmups=warmups,
    )
    cpu = _snapshot(spec, pid, settings).since(before)
    failed = [r for r in result.requests if not r.ok]
    if failed:
        print(f"   {len(failed)} failed, e.g. {failed[0].error}", flush=True)
    return result, cpu


def _flamegraphs(
    spec: ServerSpec,
    settings: Settings,
    base_url: str,
    key: str,
    jobs: list[ChatJob],
    out_dir: Path,
    tag: str,
) -> list[str]:
    """py-spy flame graphs of the API and primary-engine replicas under 32 streams."""
    pyspy = Path(sys.executable).parent / "py-spy"
    targets = {"api": ":api", "engine": ":llm_primary"}
    procs = []
    written = []
    duration = 25
    for name, marker in targets.items():
        found = [p for p in find_processes(marker) if "ServeReplica" in " ".join(p.cmdline())]
        if not found:
            print(f"   flame graph {name}: replica not found", flush=True)
            continue
        svg = out_dir / f"flame-{name}{('-' + tag) if tag else ''}.svg"
        argv = [str(pyspy), "record", "--pid", str(found[0].pid), "--subprocesses",
                "--nonblocking", "--rate", "50", "--duration", str(duration),
                "--format", "flamegraph", "--output", str(svg)]  # fmt: skip
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        written.append(str(svg.relative_to(REPO_ROOT)))
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            run_level(base_url, key, settings.llm.primary.served_name, jobs, concurrency=32,
                      max_tokens=256, warmups=0)  # fmt: skip

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    for process in procs:
        process.wait(timeout=duration + 60)
    stop.set()
    worker.join(timeout=300)
    return written


def _levels_document(
    results: dict[str, dict[tuple[int, int], SideLevel]],
) -> dict[str, dict[str, Any]]:
    """Each side's measured levels, keyed ``<streams>x<tokens>``, as the JSON stores them."""
    return {
        side: {f"{c}x{n}": asdict(level) for (c, n), level in per.items()}
        for side, per in results.items()
    }


def _save_progress(path: Path, results: dict[str, dict[tuple[int, int], SideLevel]]) -> None:
    """Every finished level so far, so that an interrupted run keeps what it measured."""
    write_json(path, {"partial": True, "levels": _levels_document(results)})


def _jobs(questions: list[str], grounded: dict[str, Grounded], count: int, seed: int,
          messages: dict[str, tuple[dict[str, str], ...]]) -> list[ChatJob]:  # fmt: skip
    usable = [q for q in questions if grounded[q].generated]
    order = random.Random(seed).sample(usable * (1 + count // max(1, len(usable))), k=count)
    return [ChatJob(q, messages[q]) for q in order]


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(profile=args.profile)
    model_dir = _model_dir(settings)
    os.environ.update(offline_environment(settings))
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    logs = args.results_dir / "raw"
    every = list(dict.fromkeys(staff_questions()))
    questions = random.Random(args.seed).sample(every, k=min(args.questions, len(every)))
    served = settings.llm.primary.served_name
    results: dict[str, dict[tuple[int, int], SideLevel]] = {RAW: {}, ENCLAVE: {}}
    flames: list[str] = []
    enclave_spec, key = _enclave_spec(settings, args, logs / f"{stamp}-{ENCLAVE}.log")
    ensure_port_free(enclave_spec.host, enclave_spec.port)
    enclave_url = f"http://{LOOPBACK}:{enclave_spec.port}"
    levels = [(c, n) for n in args.output_lens for c in args.concurrency]
    progress = args.results_dir / f"serving-{stamp}.partial.json"

    print(f"== {ENCLAVE}: starting (log: {enclave_spec.log_path})", flush=True)
    with running(enclave_spec) as started:
        ready = f"ready after {started.ready_s:.0f} s"
        print(f"== {ENCLAVE}: {ready}; probing {len(questions)} questions", flush=True)
        grounded = probe_questions(enclave_url, key, served, questions)
        user_only = {q: ({"role": "user", "content": q},) for q in questions}
        if args.only in {"enclave", "both"}:
            for concurrency, output_len in levels:
                jobs = _jobs(questions, grounded, num_prompts(concurrency, args.num_prompts_scale),
                             args.seed, user_only)  # fmt: skip
                level, cpu = _measure(enclave_spec, started.pid, settings, enclave_url, key, jobs,
                                      concurrency, output_len, args.warmups)  # fmt: skip
                results[ENCLAVE][(concurrency, output_len)] = side_level(level, cpu)
                _save_progress(progress, results)
            if args.flamegraphs:
                jobs = _jobs(questions, grounded, 64, args.seed, user_only)
                flames = _flamegraphs(enclave_spec, settings, enclave_url, key, jobs,
                                      args.results_dir, args.flamegraph_tag)  # fmt: skip

    prompt = resolve([global_layer(load_repo_prompt(settings.prompts.directory / "chat"))])
    canary = ensure_canary_token(settings.paths.data_dir)
    raw_chat = {
        q: raw_messages(prompt, grounded[q], canary=canary)
        for q in questions
        if grounded[q].generated
    }
    raw_spec = _raw_spec(settings, model_dir, args, logs / f"{stamp}-{RAW}.log")
    raw_url = f"http://{LOOPBACK}:{raw_spec.port}"
    if args.only in {"raw", "both"}:
        print(f"== {RAW}: starting (log: {raw_spec.log_path})", flush=True)
        with running(raw_spec) as started:
            print(f"== {RAW}: ready after {started.ready_s:.0f} s", flush=True)
            for concurrency, output_len in levels:
                jobs = _jobs(questions, grounded, num_prompts(concurrency, args.num_prompts_scale),
                             args.seed, raw_chat)  # fmt: skip
                level, cpu = _measure(raw_spec, started.pid, settings, raw_url, "unused", jobs,
                                      concurrency, output_len, args.warmups)  # fmt: skip
                results[RAW][(concurrency, output_len)] = side_level(level, cpu)
                _save_progress(progress, results)

    import vllm

    command = shlex.join(["python", "-m", "benchmarks.serving_bench", *sys.argv[1:]])
    meta: dict[str, Any] = {
        "benchmark": "serving-equal-work",
        "created_utc": now.isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(REPO_ROOT),
        "machine": machine_info(),
        "load_before": os.getloadavg(),
        "profile": settings.profile,
        "vllm_version": vllm.__version__,
        "model": served,
        "raw_argv": raw_spec.argv,
        "questions": len(questions),
        "questions_generated": sum(1 for g in grounded.values() if g.generated),
        "questions_with_documents": sum(1 for g in grounded.values() if g.documents),
        "prompt_versions": sorted({g.prompt_version for g in grounded.values()}),
        "flamegraphs": flames,
    }
    rows = table(levels, results)
    print()
    print("\n".join(rows.text))
    breakdown = ttft_breakdown(results[ENCLAVE].get((1, args.output_lens[-1])))
    json_path = args.results_dir / f"serving-{stamp}.json"
    write_json(
        json_path,
        {
            **meta,
            "summary": rows.summary,
            "ttft_breakdown_1_stream": breakdown,
            "levels": _levels_document(results),
        },
    )
    progress.unlink(missing_ok=True)
    print(f"\nRaw results: {json_path}")
    if args.only == "both":
        png = args.results_dir / "serving.png"
        plot(levels, results, png, f"Enclave vs raw vLLM, equal work — {meta['created_utc']}")
        if not args.no_readme:
            meta["json_path"] = str(json_path.relative_to(REPO_ROOT))
            update_readme(BENCH_DIR / "README.md", markdown_section(meta, rows, breakdown))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the benchmark, print the table, write the results."""
    args = _parse_args(argv)
    started = time.monotonic()
    try:
        return _run(args)
    except (ConfigurationError, ModelStoreError) as exc:
        print(f"serving_bench: {exc.detail}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"serving_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        print(f"(benchmark took {time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
