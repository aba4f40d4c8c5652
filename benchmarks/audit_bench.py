"""Append rate of the audit chain on PostgreSQL under concurrent writers.

Every exchange appends one record to one global chain: the writer locks the chain's head
row (``SELECT ... FOR UPDATE``), signs, inserts and commits, so appends are serialised
whatever the number of API replicas or tenants. This measures how many appends per second
that allows, and the latency a writer sees, at 1..N concurrent writers (each its own
connection from the pool, like API replicas), with the records spread over several tenants
(the chain is still one). Each run uses a fresh database and verifies the chain after it.

    python -m benchmarks.audit_bench                    # 1, 4, 16, 64 writers, 10 s each
    python -m benchmarks.audit_bench --writers 1,8 --seconds 5 --no-readme

Writes the section between the audit-bench markers of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.report import git_commit, machine_info, update_readme
from core.audit import AuditLog, AuditUnavailable
from core.db import Database, upgrade
from core.settings import Settings

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- audit-bench:start -->", "<!-- audit-bench:end -->")
PG_URL = os.environ.get(
    "ENCLAVE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TENANTS = 8


def _event(index: int) -> dict[str, Any]:
    # The shape and size of a chat.exchange event (ids, lineage, timings), no user text.
    return {
        "request_id": f"req_{index:016x}",
        "conversation_id": f"conv_{index:012x}",
        "model": "smollm2-135m-instruct",
        "engine": "vllm",
        "prompt_version": "chat@7",
        "config_version": "cfg_0123456789abcdef",
        "chunks": [f"handbook:{index % 97}:{n}" for n in range(4)],
        "decision": "allow",
        "usage": {"prompt_tokens": 412, "completion_tokens": 256},
        "timings_ms": {"guards": 31.5, "retrieval": 12.2, "first_token": 180.4, "total": 9100},
        "fallback": None,
    }


async def _admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _run(writers: int, seconds: float, workdir: Path) -> dict[str, Any]:
    name = f"enclave_auditbench_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            paths={"data_dir": workdir},
            database={"url": url, "pool_size": writers},
        )
        db = Database.from_settings(settings)
        audit = AuditLog.from_settings(settings)
        latencies: list[float] = []
        failures = 0
        stop_at = time.perf_counter() + seconds
        counter = 0

        async def writer(number: int) -> None:
            nonlocal counter, failures
            while time.perf_counter() < stop_at:
                counter += 1
                index = counter
                started = time.perf_counter()
                try:
                    async with audit.transaction(db) as connection:
                        await audit.append(
                            connection,
                            tenant=f"tenant-{index % TENANTS}",
                            actor=f"user-{number}",
                            event_type="chat.exchange",
                            event=_event(index),
                        )
                except AuditUnavailable:  # a lock timeout: counted, the writer goes on
                    failures += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(writer(n) for n in range(writers)))
        elapsed = time.perf_counter() - began
        report = await audit.verify(db)
        await db.dispose()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ordered = sorted(latencies)
    return {
        "writers": writers,
        "seconds": round(elapsed, 2),
        "appends": len(latencies),
        "failures": failures,
        "appends_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "chain_ok": report.ok,
    }


def _section(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        MARKERS[0],
        "## Audit chain: append rate on PostgreSQL (`benchmarks/audit_bench.py`)",
        "",
        f"Measured {meta['when']} at commit `{meta['commit']}` on {meta['machine']}; "
        f"command: `{meta['command']}`. One global chain (the head row locked per append), "
        f"records spread over {TENANTS} tenants, each writer its own pooled connection, "
        "one append per transaction (as one exchange writes it). Chain verified after each run.",
        "",
        "| writers | appends/s | p50 ms | p99 ms | appends | failures | chain verifies |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['writers']} | {r['appends_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['appends']} | {r['failures']} | {'yes' if r['chain_ok'] else 'NO'} |"
        )
    lines += ["", MARKERS[1]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON result and the README section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,4,16,64", help="comma-separated writer counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each run")
    parser.add_argument("--no-readme", action="store_true", help="do not update the README")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.writers.split(",") if x.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="enclave-auditbench-") as workdir:
        for writers in counts:
            result = asyncio.run(_run(writers, args.seconds, Path(workdir)))
            print(json.dumps(result), flush=True)
            results.append(result)
    machine = machine_info()
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(REPO),
        "machine": f"{machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, "
        f"{machine['ram_gib']} GiB (shared with other work), PostgreSQL on 127.0.0.1",
        "command": "python -m benchmarks.audit_bench "
        f"--writers {args.writers} --seconds {args.seconds:g}",
    }
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"audit-{stamp}.json").write_text(
        json.dumps({"meta": meta, "machine": machine, "results": results}, indent=2),
        encoding="utf-8",
    )
    section = _section(results, meta)
    print(section)
    if not args.no_readme:
        update_readme(REPO / "benchmarks" / "README.md", section, MARKERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
