"""Output tokens/s and time to first token: Enclave vs the raw vLLM OpenAI server.

Both serve the same prepared model folder with the same engine settings, one after the
other (never at once: the CPU is shared), and both are measured with vLLM's own serving
benchmark (``vllm.benchmarks.serve``) run in-process, streaming chat completions at each
concurrency. Writes a JSON file and a plot to ``benchmarks/results/`` and the results
section of ``benchmarks/README.md``.

    python -m benchmarks.serving_bench                      # the full run (make bench)
    python -m benchmarks.serving_bench --only raw --concurrency 1 --num-prompts-scale 0.25

Run it from the repository root with the project's virtualenv, after ``make models``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.report import (
    ENCLAVE,
    RAW,
    format_table,
    git_commit,
    machine_info,
    markdown_section,
    plot,
    summarise,
    update_readme,
    write_json,
)
from benchmarks.servers import ServerError, ServerSpec, ensure_port_free, free_port, running
from core.errors import ConfigurationError, ModelStoreError
from core.prompts import global_layer, load_repo_prompt, resolve
from core.settings import Settings, load_settings
from models.store import ModelStore
from serving.runtime_env import offline_environment

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO_ROOT / "benchmarks"
LOOPBACK = "127.0.0.1"
# Bulk per-request lists of vLLM's detailed result; input_lens, output_lens and ttfts stay.
_DROPPED_PER_REQUEST = (
    "generated_texts",
    "itls",
    "latencies",
    "queue_times",
    "start_times",
    "errors",
)


@dataclass(frozen=True, slots=True)
class Workload:
    """What every benchmark level sends."""

    input_len: int
    output_len: int
    warmups: int
    seed: int
    dataset: str = "staff"
    dataset_path: str = ""
    # The raw server gets Enclave's system prompt inside each prompt, so both targets
    # prefill about as many tokens and the difference is the pipeline's own cost.
    raw_dataset_path: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """One server to benchmark: how to start it and where its API answers."""

    spec: ServerSpec
    base_url: str


def _concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from exc
    if not values or min(values) < 1:
        msg = f"concurrency levels must be positive integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return values


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving_bench",
        description="Output tok/s and TTFT through Enclave vs the raw vLLM OpenAI server.",
    )
    parser.add_argument(
        "--profile", default="default", help="settings profile (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_list,
        default=[1, 8, 32],
        help="comma-separated concurrent streams (default: 1,8,32)",
    )
    parser.add_argument(
        "--num-prompts-scale",
        type=float,
        default=1.0,
        help="prompts per level = ceil(scale * max(8, 2 * streams)) (default: %(default)s)",
    )
    parser.add_argument(
        "--only",
        choices=("raw", "enclave", "both"),
        default="both",
        help="benchmark one target only; README and plot are written only for 'both'",
    )
    parser.add_argument(
        "--dataset",
        choices=("staff", "random"),
        default="staff",
        help="staff: real staff questions (handbook and answerable intents), which pass the "
        "guards as a portal's traffic would; random: vLLM's random tokens (the guards block "
        "or scrub much of that noise, so it measures a different workload on Enclave)",
    )
    parser.add_argument("--input-len", type=int, default=128, help="prompt tokens (random)")
    parser.add_argument("--output-len", type=int, default=64, help="output tokens asked")
    parser.add_argument("--warmups", type=int, default=2, help="warm-up requests per level")
    parser.add_argument(
        "--enclave-port",
        type=int,
        default=None,
        help="run Enclave's API on this port (ENCLAVE_API__PORT); default: from settings",
    )
    parser.add_argument("--raw-ready-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--enclave-ready-timeout", type=float, default=400.0, help="seconds")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where the JSON file and plot go (default: benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if args.num_prompts_scale <= 0:
        parser.error("--num-prompts-scale must be positive")
    return args


def num_prompts(concurrency: int, scale: float) -> int:
    """Prompts sent at one concurrency level: enough to keep every stream busy twice."""
    return max(1, math.ceil(scale * max(8, 2 * concurrency)))


def _model_dir(settings: Settings) -> Path:
    primary = settings.llm.primary
    if primary.engine != "vllm":
        msg = (
            f"llm.primary.engine is {primary.engine!r} in profile {settings.profile!r}; "
            "this benchmark compares Enclave with the raw vLLM engine and needs 'vllm'."
        )
        raise ConfigurationError(msg)
    folder = ModelStore(settings.paths.model_store).path_of(primary.store_name)
    if not (folder / "config.json").is_file():
        msg = f"Model folder {folder} has no config.json. Run `make models` to prepare it."
        raise ModelStoreError(msg)
    return folder


def _raw_target(
    settings: Settings, model_dir: Path, args: argparse.Namespace, log_path: Path
) -> Target:
    """The raw vLLM OpenAI server, with the engine settings Enclave's vLLM engine uses."""
    primary = settings.llm.primary
    port = free_port(LOOPBACK)
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        primary.served_name,
        *(["--enforce-eager"] if primary.enforce_eager else []),
        "--max-model-len",
        str(primary.max_model_len),
        "--dtype",
        primary.dtype,
        "--max-num-seqs",
        str(primary.max_num_seqs),
        "--disable-log-stats",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    # offline_environment carries VLLM_CPU_KVCACHE_SPACE from settings, as Enclave's engine.
    env = {**os.environ, **offline_environment(settings)}
    base_url = f"http://{LOOPBACK}:{port}"
    spec = ServerSpec(
        name=RAW,
        host=LOOPBACK,
        port=port,
        argv=argv,
        env=env,
        cwd=REPO_ROOT,
        ready_url=f"{base_url}/v1/models",
        ready_timeout_s=args.raw_ready_timeout,
        stop_timeout_s=30.0,
        log_path=log_path,
    )
    return Target(spec=spec, base_url=base_url)


def _enclave_target(settings: Settings, args: argparse.Namespace, log_path: Path) -> Target:
    """``enclave serve`` from this virtualenv, with the chosen profile."""
    executable = Path(sys.executable).parent / "enclave"
    if not executable.is_file():
        msg = f"{executable} not found: run the benchmark with the project's venv (make install)."
        raise ServerError(msg)
    env = {
        **os.environ,
        "ENCLAVE_PROFILE": args.profile,
        # The benchmark measures serving, not the limits: room for every request it sends.
        "ENCLAVE_LIMITS__USER_REQUESTS_PER_MINUTE": "1000000",
        "ENCLAVE_LIMITS__TENANT_REQUESTS_PER_MINUTE": "1000000",
        "ENCLAVE_LIMITS__USER_TOKENS__TOKENS": "1000000000",
        "ENCLAVE_LIMITS__TENANT_TOKENS__TOKENS": "1000000000",
    }
    # A staff key for the benchmark client (vLLM's benchmark sends OPENAI_API_KEY as a bearer
    # token; the raw vLLM server ignores it).
    created = subprocess.run(
        [str(executable), "keys", "create", "--name", "serving benchmark", "--role", "staff"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    os.environ["OPENAI_API_KEY"] = created.stdout.strip().splitlines()[-1]
    port = settings.api.port
    if args.enclave_port is not None:
        port = args.enclave_port
        env["ENCLAVE_API__PORT"] = str(port)
    host = LOOPBACK if settings.api.host in {"0.0.0.0", "::", ""} else settings.api.host
    base_url = f"http://{host}:{port}"
    spec = ServerSpec(
        name=ENCLAVE,
        host=host,
        port=port,
        argv=[str(executable), "serve"],
        env=env,
        cwd=REPO_ROOT,
        ready_url=f"{base_url}/readyz",
        ready_timeout_s=args.enclave_ready_timeout,
        stop_timeout_s=60.0,
        log_path=log_path,
    )
    return Target(spec=spec, base_url=base_url)


_ANSWERED_INTENTS = {"it_support", "hr_policy", "document_question", "code_help", "writing_help"}


def write_staff_prompts(path: Path, prefix: str = "") -> Path:
    """Staff questions the portal answers: the handbook eval set and answerable intents."""
    import json

    prompts = [
        json.loads(line)["question"]
        for line in (REPO_ROOT / "index/samples/handbook_eval.jsonl").read_text().splitlines()
        if line.strip()
    ]
    for line in (REPO_ROOT / "models/intent/data/intents.jsonl").read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("label") in _ANSWERED_INTENTS:
            prompts.append(row["text"])
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"prompt": prefix + p}) + "\n" for p in prompts)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def vllm_bench_argv(
    base_url: str,
    served_name: str,
    model_dir: Path,
    workload: Workload,
    concurrency: int,
    prompts: int,
    label: str,
) -> list[str]:
    """Arguments for ``vllm.benchmarks.serve`` at one concurrency level."""
    return [
        "--backend", "openai-chat",
        "--endpoint", "/v1/chat/completions",
        "--base-url", base_url,
        "--model", served_name,
        "--tokenizer", str(model_dir),
        # --skip-chat-template: the custom dataset would otherwise send each prompt already
        # rendered with the chat template ("<|im_start|>system…") as the user's text.
        *(["--dataset-name", "custom", "--dataset-path",
           workload.raw_dataset_path if label == RAW and workload.raw_dataset_path
           else workload.dataset_path,
            "--custom-output-len", str(workload.output_len), "--skip-chat-template"]
          if workload.dataset == "staff" else
          ["--dataset-name", "random", "--random-input-len", str(workload.input_len),
           "--random-output-len", str(workload.output_len)]),
        "--num-prompts", str(prompts),
        "--max-concurrency", str(concurrency),
        "--ignore-eos",
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99",
        "--seed", str(workload.seed),
        "--num-warmups", str(workload.warmups),
        "--label", label,
        "--save-detailed",
        "--disable-tqdm",
    ]  # fmt: skip


def run_vllm_bench(bench_argv: list[str]) -> dict[str, Any]:
    """One level of vLLM's serving benchmark, in-process; its result dict, slimmed down."""
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()  # type: ignore[no-untyped-call]
    add_cli_args(parser)
    result: dict[str, Any] = bench_main(parser.parse_args(bench_argv))
    errors = sorted({error for error in result.get("errors", []) if error})
    for key in _DROPPED_PER_REQUEST:
        result.pop(key, None)
    result["distinct_errors"] = errors[:5]
    result["bench_argv"] = bench_argv
    return {key: value for key, value in result.items() if value is not None}


def _bench_target(
    target: Target,
    settings: Settings,
    model_dir: Path,
    workload: Workload,
    levels: Sequence[tuple[int, int]],
) -> tuple[dict[int, dict[str, Any]], float]:
    """Start the target, run every level against it, stop it; results and seconds to ready."""
    name = target.spec.name
    print(f"== {name}: starting (log: {target.spec.log_path})", flush=True)
    results: dict[int, dict[str, Any]] = {}
    with running(target.spec) as ready_s:
        print(f"== {name}: ready after {ready_s:.0f} s", flush=True)
        for concurrency, prompts in levels:
            print(f"== {name}: {concurrency} stream(s), {prompts} prompts", flush=True)
            bench_argv = vllm_bench_argv(
                target.base_url,
                settings.llm.primary.served_name,
                model_dir,
                workload,
                concurrency,
                prompts,
                label=name,
            )
            results[concurrency] = run_vllm_bench(bench_argv)
    print(f"== {name}: stopped", flush=True)
    return results, ready_s


def _targets(
    settings: Settings, model_dir: Path, args: argparse.Namespace, stamp: str
) -> list[Target]:
    logs = args.results_dir / "raw"
    targets: list[Target] = []
    if args.only in {"raw", "both"}:
        targets.append(_raw_target(settings, model_dir, args, logs / f"{stamp}-{RAW}.log"))
    if args.only in {"enclave", "both"}:
        target = _enclave_target(settings, args, logs / f"{stamp}-{ENCLAVE}.log")
        # Fail now rather than after the raw engine's run.
        ensure_port_free(target.spec.host, target.spec.port)
        targets.append(target)
    return targets


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(profile=args.profile)
    model_dir = _model_dir(settings)
    # The benchmark client loads the tokenizer from the model folder: keep it offline too.
    os.environ.update(offline_environment(settings))
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    dataset_path = raw_dataset_path = ""
    if args.dataset == "staff":
        raw_dir = args.results_dir / "raw"
        dataset_path = str(write_staff_prompts(raw_dir / "staff-prompts.jsonl"))
        # The raw engine gets the same system text the stack renders (no documents).
        prompt = resolve([global_layer(load_repo_prompt(settings.prompts.directory / "chat"))])
        values = {"canary": "NWC-0000000000000000", "today": now.date().isoformat()}
        system = "\n\n".join(
            prompt.render(part, values) for part in ("system", "developer") if prompt.has(part)
        )
        raw_dataset_path = str(
            write_staff_prompts(raw_dir / "staff-prompts-with-system.jsonl", prefix=system + "\n\n")
        )
    workload = Workload(
        args.input_len,
        args.output_len,
        args.warmups,
        seed=0,
        dataset=args.dataset,
        dataset_path=dataset_path,
        raw_dataset_path=raw_dataset_path,
    )
    levels = [(c, num_prompts(c, args.num_prompts_scale)) for c in args.concurrency]
    command = shlex.join(["python", "-m", "benchmarks.serving_bench", *sys.argv[1:]])

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    servers: dict[str, dict[str, Any]] = {}
    for target in _targets(settings, model_dir, args, stamp):
        results, ready_s = _bench_target(target, settings, model_dir, workload, levels)
        runs[target.spec.name] = results
        servers[target.spec.name] = {"argv": target.spec.argv, "ready_s": round(ready_s, 1)}

    import vllm

    rows = summarise(levels, runs)
    json_path = args.results_dir / f"serving-{stamp}.json"
    meta: dict[str, Any] = {
        "benchmark": "serving",
        "created_utc": now.isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(REPO_ROOT),
        "machine": machine_info(),
        "profile": settings.profile,
        "vllm_version": vllm.__version__,
        "model": {
            "served_name": settings.llm.primary.served_name,
            "store_name": settings.llm.primary.store_name,
            "folder": str(model_dir),
        },
        "workload": asdict(workload),
        "levels": [{"concurrency": c, "num_prompts": n} for c, n in levels],
        "servers": servers,
        "json_path": _display_path(json_path),
    }
    print()
    print(format_table(rows))
    summary = [
        {**asdict(r), "ratio": r.ratio, "ttft_overhead_p50_ms": r.ttft_overhead_p50_ms}
        for r in rows
    ]
    write_json(json_path, {**meta, "summary": summary, "runs": runs})
    print(f"\nRaw results: {json_path}")
    if args.only == "both":
        png = args.results_dir / "serving.png"
        title = f"Enclave vs raw vLLM — {meta['machine']['cpu_model']}, {meta['created_utc']}"
        plot(rows, png, title)
        update_readme(BENCH_DIR / "README.md", markdown_section(meta, rows))
        print(f"Plot: {png}\nREADME section: {BENCH_DIR / 'README.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the benchmark, print the table, write the results."""
    args = _parse_args(argv)
    try:
        return _run(args)
    except (ConfigurationError, ModelStoreError) as exc:
        print(f"serving_bench: {exc.detail}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"serving_bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
