"""Retrieval at scale: ingest, query latency, memory, disk and HNSW recall at 10k and 100k chunks.

Runs the real pipeline through ``index.knowledge_base.KnowledgeBase``'s public API — the
MiniLM encoder from the model store and FAISS HNSW — on synthetic Markdown documents that
are generated deterministically from a seed (a word-bigram chain trained on the sample
handbook, so the text is English-like and every chunk differs). Each scale runs in its own
child process, so its memory figures are not inflated by the run before it.

    python -m benchmarks.index_bench                  # 10k and 100k chunks (~30-50 min, 2 cores)
    python -m benchmarks.index_bench --scales 500 1000 --queries 50 --no-readme   # smoke run
    python -m benchmarks.index_bench --results a.json b.json   # report from `--worker` runs

A scale can run alone (``--worker N --out FILE``, progress on stderr) and be assembled into
the report later with ``--results``; each scale's result records ``uptime`` before and after.

Measured per scale:

- ingest throughput, end to end: decode and parse the uploaded bytes, chunk, embed, build
  the HNSW graph, write the version folder (``add_documents`` in one change);
- query latency p50/p99 one query at a time (``KnowledgeBase.query``: embedding + search)
  and search-only latency (FAISS alone, on precomputed query vectors);
- memory (RSS growth over the ingest; the FAISS index file) and disk (the version folder);
- HNSW recall@10 against exact inner-product search (``faiss.IndexFlatIP``) over the same
  vectors, at the default ``efSearch`` and a few others.

Writes ``benchmarks/results/index-<UTC timestamp>.json`` (+ ``.png``) and the section between
the index-bench markers of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]
HANDBOOK = REPO / "index" / "samples" / "handbook"
MODEL_STORE = REPO / ".enclave" / "models"
ENCODER_NAME = "all-minilm-l6-v2"
MARKERS = ("<!-- index-bench:start -->", "<!-- index-bench:end -->")
SECTIONS_PER_DOC = 5  # each section stays under the chunker's 200 words: one chunk each
SECTION_WORDS = (20, 50)
PROBE_WORDS = (40, 65, 110, 160)
PROGRESS_EVERY = 5_000
K = 10
EF_SEARCH_SWEEP = (16, 32, 64, 128, 256)
_WORD = re.compile(r"^[A-Za-z][A-Za-z'’-]*[.,;:?]?$")


# Synthetic corpus -------------------------------------------------------------------------------
class TextGenerator:
    """English-like sentences from a word-bigram chain over the sample handbook's prose."""

    def __init__(self) -> None:
        words: list[str] = []
        for path in sorted(HANDBOOK.glob("*.md")):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.startswith(("#", "|", "---")):
                    continue
                words += [w for w in line.replace("**", "").split() if _WORD.match(w)]
        self.follow: dict[str, list[str]] = {}
        for first, second in itertools.pairwise(words):
            self.follow.setdefault(first, []).append(second)
        self.starts = sorted({w for w in words if w[0].isupper()})
        self.vocabulary = sorted({w.strip(".,;:?").lower() for w in words})

    def sentence(self, rng: random.Random, low: int = 8, high: int = 22) -> str:
        """One sentence of ``low`` to ``high`` words, ending in a full stop."""
        word = rng.choice(self.starts)
        out = [word]
        length = rng.randint(low, high)
        while len(out) < length:
            nexts = self.follow.get(word)
            # A dead end or an early full stop: jump to a random word to keep chunks varied.
            word = rng.choice(nexts) if nexts and rng.random() > 0.08 else rng.choice(self.starts)
            if word.endswith((".", "?")) and len(out) < low:
                word = word.rstrip(".?")
            out.append(word)
            if word.endswith((".", "?")):
                break
        text = " ".join(out).rstrip(",;:")
        return text if text.endswith((".", "?")) else text + "."

    def paragraph(self, rng: random.Random, words: int) -> str:
        """Sentences until about ``words`` words."""
        out: list[str] = []
        count = 0
        while count < words:
            sentence = self.sentence(rng)
            out.append(sentence)
            count += len(sentence.split())
        return " ".join(out)

    def heading(self, rng: random.Random) -> str:
        """A short title-cased phrase."""
        return " ".join(w.capitalize() for w in rng.sample(self.vocabulary, rng.randint(2, 5)))


def document_markdown(gen: TextGenerator, seed: int, number: int) -> bytes:
    """Document ``number`` of the corpus: an H1 and five H2 sections of 20-50 words each."""
    rng = random.Random(f"{seed}:{number}")
    lines = [f"# {gen.heading(rng)} {number}", ""]
    for _ in range(SECTIONS_PER_DOC):
        lines += [f"## {gen.heading(rng)}", ""]
        # Far shorter than the chunker's 160-word target, so that 100k chunks embed within
        # the hour on 2 shared cores; the probe in ``run_scale`` measures what longer chunks
        # cost to embed.
        total = rng.randint(SECTION_WORDS[0], SECTION_WORDS[1])
        first = rng.randint(8, total - 8)
        lines += [gen.paragraph(rng, first), "", gen.paragraph(rng, total - first), ""]
    return "\n".join(lines).encode()


def queries_for(gen: TextGenerator, seed: int, chunk_texts: Sequence[str], count: int) -> list[str]:
    """Half snippets of indexed chunks (6-12 words), half fresh sentences."""
    rng = random.Random(f"{seed}:queries")
    out: list[str] = []
    for number in range(count):
        if number % 2 == 0:
            words = rng.choice(chunk_texts).split()
            size = rng.randint(6, 12)
            first = rng.randint(0, max(0, len(words) - size))
            out.append(" ".join(words[first : first + size]))
        else:
            out.append(gen.sentence(rng, 5, 14))
    return out


# Measurements -----------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


def timed_each(fn: Callable[[int], object], count: int, warmup: int = 10) -> list[float]:
    """Wall time of ``fn(i)`` for each ``i`` (after ``warmup`` untimed calls)."""
    for number in range(min(warmup, count)):
        fn(number)
    samples: list[float] = []
    for number in range(count):
        started = time.perf_counter()
        fn(number)
        samples.append(time.perf_counter() - started)
    return samples


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes of each file in a folder and their total."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    return {**sizes, "total": sum(sizes.values())}


class TimedEncoder:
    """Wraps the encoder to add up the seconds spent embedding (the rest is index work)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.texts = 0

    def encode(self, texts: Sequence[str]) -> Any:
        """The inner encoder's vectors, timed."""
        started = time.perf_counter()
        vectors = self.inner.encode(texts)
        self.seconds += time.perf_counter() - started
        before, self.texts = self.texts, self.texts + len(texts)
        if self.texts // PROGRESS_EVERY > before // PROGRESS_EVERY:
            # Progress on stderr: a 100k-chunk ingest runs for tens of minutes.
            rate = self.texts / self.seconds
            sys.stderr.write(f"  embedded {self.texts:,} texts, {rate:.1f}/s\n")
            sys.stderr.flush()
        return vectors


def run_scale(target_chunks: int, seed: int, query_count: int) -> dict[str, Any]:
    """Build one knowledge base of ``target_chunks`` chunks and measure it (in this process)."""
    import faiss
    import numpy as np
    import torch

    from index.faiss_index import HNSWOptions, VectorIndex, vector_id
    from index.knowledge_base import KnowledgeBase
    from index.parsing import MARKDOWN, document_from_bytes
    from models.encoder import SentenceEncoder
    from models.store import ModelStore

    uptime_before = _uptime()
    store = ModelStore(MODEL_STORE)
    model_dir = store.verify([ENCODER_NAME])[ENCODER_NAME].folder(store.root)
    encoder = TimedEncoder(SentenceEncoder(model_dir))
    gen = TextGenerator()
    # Warm up on passages as long as the longest probe, so that torch's buffers are grown
    # before the RSS baseline is taken.
    probe_rng = random.Random(f"{seed}:probe")
    encoder.encode([gen.paragraph(probe_rng, PROBE_WORDS[-1]) for _ in range(64)])
    by_length: dict[str, float] = {}
    for words in PROBE_WORDS:
        texts = [gen.paragraph(probe_rng, words) for _ in range(128)]
        started = time.perf_counter()
        encoder.encode(texts)
        by_length[str(words)] = round(len(texts) / (time.perf_counter() - started), 1)
    encoder.seconds, encoder.texts = 0.0, 0

    documents_needed = -(-target_chunks // SECTIONS_PER_DOC)
    started = time.perf_counter()
    uploads = [document_markdown(gen, seed, n) for n in range(documents_needed)]
    generate_s = time.perf_counter() - started
    gc.collect()
    rss_before = _status_kib("VmRSS")
    hwm_before = _status_kib("VmHWM")

    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        root = Path(tmp) / "kb"
        kb = KnowledgeBase(root, encoder, encoder_id=ENCODER_NAME)
        started = time.perf_counter()
        documents = [
            document_from_bytes(
                data, doc_id=f"doc-{n:06d}", media_type=MARKDOWN, source=f"doc-{n:06d}.md"
            )
            for n, data in enumerate(uploads)
        ]
        report = kb.add_documents(documents)
        ingest_s = time.perf_counter() - started
        embed_s, embedded = encoder.seconds, encoder.texts
        del documents
        gc.collect()
        rss_after = _status_kib("VmRSS")
        hwm_after = _status_kib("VmHWM")

        snapshot = kb.snapshot
        version_dir = root / kb.version
        disk = folder_bytes(version_dir)
        index_file = next(p for p in version_dir.iterdir() if p.suffix == ".faiss")
        chunks = snapshot.chunks
        queries = queries_for(gen, seed, [c.text for c in chunks], query_count)

        query_samples = timed_each(lambda i: kb.query(queries[i], k=K), len(queries))
        query_vectors = np.asarray(encoder.inner.encode(queries), dtype=np.float32)
        vectors = snapshot.vectors
        if vectors is None:
            msg = "the knowledge base has no vectors after ingest"
            raise RuntimeError(msg)
        search_samples = timed_each(
            lambda i: vectors.search(query_vectors[i : i + 1], K), len(queries)
        )

        ids = np.array([vector_id(c.chunk_id) for c in chunks], dtype=np.int64)
        exact = faiss.IndexFlatIP(vectors.dim)
        exact.add(vectors.vectors(ids))
        _, rows = exact.search(query_vectors, K)
        truth = [set(ids[r[r >= 0]].tolist()) for r in rows]

        def recall(index: Any) -> float:
            _, found = index.search(query_vectors, K)
            hits = [len(t & set(f.tolist())) / K for t, f in zip(truth, found, strict=True)]
            return round(statistics.fmean(hits), 4)

        sweep: dict[str, dict[str, float]] = {}
        for ef in EF_SEARCH_SWEEP:
            loaded = VectorIndex.load(index_file, HNSWOptions(ef_search=ef))
            times = timed_each(lambda i, x=loaded: x.search(query_vectors[i : i + 1], K), 100)
            sweep[str(ef)] = {"recall_at_10": recall(loaded), **percentiles(times)}

        return {
            "target_chunks": target_chunks,
            "documents": report.documents,
            "chunks": report.chunks,
            "encoded": report.encoded,
            "queries": len(queries),
            "ingest": {
                "seconds": round(ingest_s, 2),
                "chunks_per_s": round(report.chunks / ingest_s, 1),
                "embed_seconds": round(embed_s, 2),
                "embed_passages_per_s": round(embedded / embed_s, 1),
                "other_seconds": round(ingest_s - embed_s, 2),
                "knowledge_base_report_seconds": report.seconds,
                "corpus_generation_seconds_untimed": round(generate_s, 2),
            },
            "query_latency": percentiles(query_samples),
            "search_only_latency": percentiles(search_samples),
            "recall_at_10": recall(vectors),
            "ef_search_default": HNSWOptions().ef_search,
            "ef_search_sweep": sweep,
            "memory": {
                "rss_before_mib": round(rss_before / 1024, 1),
                "rss_after_mib": round(rss_after / 1024, 1),
                "rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
                "peak_rss_growth_mib": round((hwm_after - hwm_before) / 1024, 1),
                "faiss_index_bytes": index_file.stat().st_size,
                "raw_vectors_bytes": int(len(ids) * vectors.dim * 4),
            },
            "disk": {"version_folder_bytes": disk["total"], "files": disk},
            "words_per_chunk_mean": round(statistics.fmean(len(c.text.split()) for c in chunks), 1),
            "embedding_passages_per_s_by_words": by_length,
            "torch_threads": torch.get_num_threads(),
            "uptime_before": uptime_before,
            "uptime_after": _uptime(),
            "faiss_threads": faiss.omp_get_max_threads(),
        }


# Orchestration and report -----------------------------------------------------------------------
def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _child(scale: int, seed: int, queries: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        argv = [sys.executable, "-m", "benchmarks.index_bench", "--worker", str(scale)]
        argv += ["--seed", str(seed), "--queries", str(queries), "--out", str(out)]
        subprocess.run(argv, cwd=REPO, check=True)
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result
    finally:
        out.unlink(missing_ok=True)


def growth(small: Mapping[str, Any], large: Mapping[str, Any]) -> dict[str, float]:
    """How each figure grows from the smaller scale to the larger one (large / small)."""

    def ratio(a: float, b: float) -> float:
        return round(b / a, 2) if a else float("nan")

    return {
        "chunks": ratio(small["chunks"], large["chunks"]),
        "ingest_seconds": ratio(small["ingest"]["seconds"], large["ingest"]["seconds"]),
        "ingest_chunks_per_s": ratio(
            small["ingest"]["chunks_per_s"], large["ingest"]["chunks_per_s"]
        ),
        "query_p50": ratio(small["query_latency"]["p50_ms"], large["query_latency"]["p50_ms"]),
        "query_p99": ratio(small["query_latency"]["p99_ms"], large["query_latency"]["p99_ms"]),
        "search_only_p50": ratio(
            small["search_only_latency"]["p50_ms"], large["search_only_latency"]["p50_ms"]
        ),
        "search_only_p99": ratio(
            small["search_only_latency"]["p99_ms"], large["search_only_latency"]["p99_ms"]
        ),
        "rss_growth": ratio(small["memory"]["rss_growth_mib"], large["memory"]["rss_growth_mib"]),
        "faiss_index_bytes": ratio(
            small["memory"]["faiss_index_bytes"], large["memory"]["faiss_index_bytes"]
        ),
        "disk_bytes": ratio(
            small["disk"]["version_folder_bytes"], large["disk"]["version_folder_bytes"]
        ),
        "recall_at_10": ratio(small["recall_at_10"], large["recall_at_10"]),
    }


def _mib(value: float) -> str:
    return f"{value / 1024**2:.1f}"


def table(results: Sequence[Mapping[str, Any]], ratios: Mapping[str, float] | None) -> list[str]:
    """The Markdown table: one column per scale (and the growth ratio)."""
    header = "| metric | " + " | ".join(f"{r['chunks']:,} chunks" for r in results)
    header += (
        f" | growth ({results[-1]['chunks']:,} / {results[0]['chunks']:,}) |" if ratios else " |"
    )
    rows: list[tuple[str, Callable[[Mapping[str, Any]], str], str]] = [
        ("documents", lambda r: f"{r['documents']:,}", ""),
        ("ingest, end to end (chunks/s)", lambda r: f"{r['ingest']['chunks_per_s']:.1f}",
         "ingest_chunks_per_s"),
        ("ingest time (s)", lambda r: f"{r['ingest']['seconds']:.1f}", "ingest_seconds"),
        ("… of which embedding (s)", lambda r: f"{r['ingest']['embed_seconds']:.1f}", ""),
        ("… parse, chunk, HNSW build, write (s)",
         lambda r: f"{r['ingest']['other_seconds']:.1f}", ""),
        ("query p50 / p99 (ms), embed + search",
         lambda r: f"{r['query_latency']['p50_ms']:.2f} / {r['query_latency']['p99_ms']:.2f}",
         "query_p50"),
        ("search only p50 / p99 (ms), FAISS",
         lambda r: f"{r['search_only_latency']['p50_ms']:.3f} / "
         f"{r['search_only_latency']['p99_ms']:.3f}", "search_only_p50"),
        (f"HNSW recall@10 vs exact (efSearch {results[0]['ef_search_default']})",
         lambda r: f"{r['recall_at_10']:.4f}", "recall_at_10"),
        ("RSS growth over ingest (MiB)", lambda r: f"{r['memory']['rss_growth_mib']:.1f}",
         "rss_growth"),
        ("FAISS index file (MiB)", lambda r: _mib(r["memory"]["faiss_index_bytes"]),
         "faiss_index_bytes"),
        ("version folder on disk (MiB)", lambda r: _mib(r["disk"]["version_folder_bytes"]),
         "disk_bytes"),
    ]  # fmt: skip
    lines = [header, "|---|" + "---:|" * (len(results) + (1 if ratios else 0))]
    for label, cell, key in rows:
        line = f"| {label} | " + " | ".join(cell(r) for r in results) + " |"
        if ratios and key.endswith("_p50"):  # latency rows: both percentiles grow
            line += f" {ratios[key]:.2f}× / {ratios[key[:-4] + '_p99']:.2f}× |"
        elif ratios:
            line += f" {ratios[key]:.2f}× |" if key else " |"
        lines.append(line)
    return lines


def probe_line(results: Sequence[Mapping[str, Any]]) -> str:
    """Embedding throughput by passage length, as each scale's process measured it."""
    parts = []
    for r in results:
        speeds = ", ".join(
            f"{words} words {rate:.0f}/s"
            for words, rate in r["embedding_passages_per_s_by_words"].items()
        )
        parts.append(f"{r['chunks']:,}-chunk run: {speeds}")
    return (
        "Embedding alone, by passage length (MiniLM, batches of 32, 128 passages each, "
        "measured before the ingest): " + "; ".join(parts) + "."
    )


def sweep_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """recall@10 and search p50 per efSearch, per scale."""
    lines = [
        "| efSearch | "
        + " | ".join(f"{r['chunks']:,}: recall@10 / p50 ms" for r in results)
        + " |",
        "|---:|" + "---:|" * len(results),
    ]
    for ef in EF_SEARCH_SWEEP:
        cells = [
            f"{r['ef_search_sweep'][str(ef)]['recall_at_10']:.4f} / "
            f"{r['ef_search_sweep'][str(ef)]['p50_ms']:.3f}"
            for r in results
        ]
        lines.append(f"| {ef} | " + " | ".join(cells) + " |")
    return lines


def section(document: Mapping[str, Any], summary: Sequence[str]) -> str:
    """The README section between the index-bench markers."""
    machine = document["machine"]
    results = document["scales"]
    lines = [
        MARKERS[0],
        "## Retrieval at scale (KnowledgeBase, MiniLM + FAISS HNSW)",
        "",
        f"- Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs "
        f"({machine['usable_cpus']} usable), {machine['ram_gib']} GiB RAM",
        f"- Date (UTC): {document['created_utc']}",
        f"- Commit: `{document['git_commit']}`",
        f"- Command: `{document['command']}`",
        "- Load (`uptime`) before and after each scale's process; other work shared the "
        "machine: "
        + "; ".join(
            f"{r['chunks']:,}: `{r.get('uptime_before', '?')}` → `{r.get('uptime_after', '?')}`"
            for r in results
        ),
        "- Workload: synthetic Markdown, an H1 and five H2 sections per document, each "
        "section two paragraphs of whole sentences aimed at 20-50 words (one chunk per "
        f"section; {results[0]['words_per_chunk_mean']} words per chunk on average), from a "
        "word-bigram chain over the sample handbook (seed "
        f"{document['seed']}), ingested with one `add_documents` call into an empty "
        f"knowledge base; {results[0]['queries']} queries (half 6-12-word snippets of "
        "indexed chunks, half fresh sentences), k=10, one at a time after 10 warm-ups; "
        "default HNSW options (M 32, efConstruction 80); each scale in a fresh process",
        f"- Raw results: `{document['json_path']}`",
        "",
        *table(results, document.get("growth")),
        "",
        probe_line(results),
        "",
        "efSearch sweep (index reloaded with each value; search-only p50 over 100 queries):",
        "",
        *sweep_lines(results),
        "",
    ]
    if document.get("plot_path"):
        lines += [f"![Retrieval at scale]({Path(document['plot_path']).relative_to('benchmarks')})",
                  ""]  # fmt: skip
    lines += list(summary)
    lines.append(MARKERS[1])
    return "\n".join(lines) + "\n"


def plot(results: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Three panels against chunk count: ingest chunks/s, latency p50/p99, recall by efSearch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["chunks"] for r in results]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4))
    left.plot(xs, [r["ingest"]["chunks_per_s"] for r in results], "o-", label="end to end")
    left.plot(xs, [r["ingest"]["embed_passages_per_s"] for r in results], "s--", label="embedding")
    left.set_ylabel("chunks/s")
    for name, key, style in (
        ("query p50", ("query_latency", "p50_ms"), "o-"),
        ("query p99", ("query_latency", "p99_ms"), "o--"),
        ("search p50", ("search_only_latency", "p50_ms"), "s-"),
        ("search p99", ("search_only_latency", "p99_ms"), "s--"),
    ):
        middle.plot(xs, [r[key[0]][key[1]] for r in results], style, label=name)
    middle.set_yscale("log")
    middle.set_ylabel("ms")
    for r in results:
        efs = [int(e) for e in r["ef_search_sweep"]]
        right.plot(efs, [r["ef_search_sweep"][str(e)]["recall_at_10"] for e in efs], "o-",
                   label=f"{r['chunks']:,} chunks")  # fmt: skip
    right.set_xscale("log", base=2)
    right.set_xlabel("efSearch")
    right.set_ylabel("recall@10 vs exact")
    for axis in (left, middle):
        axis.set_xscale("log")
        axis.set_xlabel("chunks")
    for axis in (left, middle, right):
        axis.grid(visible=True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker``, one scale of it) and write its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--summary", type=Path, help="a file of sentences for the README")
    parser.add_argument(
        "--from-json", type=Path, help="only rewrite the README section from an earlier result"
    )
    parser.add_argument("--no-readme", action="store_true", help="leave benchmarks/README.md")
    parser.add_argument(
        "--results",
        type=Path,
        nargs="+",
        help="assemble the report from per-scale results of earlier `--worker` runs",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Weights come from the model store only; nothing may be fetched.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.from_json is not None:
        write_section(json.loads(args.from_json.read_text(encoding="utf-8")), args.summary)
        return 0
    if args.worker is not None:
        if args.out is None:
            parser.error("--worker needs --out")
        result = run_scale(args.worker, args.seed, args.queries)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0

    from benchmarks.report import git_commit, machine_info, write_json

    uptime_before = _uptime()
    results: list[dict[str, Any]] = [
        json.loads(path.read_text(encoding="utf-8")) for path in args.results or []
    ]
    for scale in [] if args.results else args.scales:
        print(f"[index-bench] {scale:,} chunks …", flush=True)
        results.append(_child(scale, args.seed, args.queries))
        r = results[-1]
        print(
            f"  ingest {r['ingest']['chunks_per_s']} chunks/s ({r['ingest']['seconds']} s), "
            f"query p50/p99 {r['query_latency']['p50_ms']}/{r['query_latency']['p99_ms']} ms, "
            f"search p50/p99 {r['search_only_latency']['p50_ms']}/"
            f"{r['search_only_latency']['p99_ms']} ms, recall@10 {r['recall_at_10']}, "
            f"RSS +{r['memory']['rss_growth_mib']} MiB, disk "
            f"{_mib(r['disk']['version_folder_bytes'])} MiB",
            flush=True,
        )
    uptime_after = _uptime()
    stamp = datetime.now(UTC)
    results_dir = REPO / "benchmarks" / "results"
    json_path = results_dir / f"index-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    plot_path = json_path.with_suffix(".png")
    command = "python -m benchmarks.index_bench"
    if argv is None and sys.argv[1:]:
        command += " " + shlex.join(sys.argv[1:])
    if args.results:
        uptime_before = results[0].get("uptime_before", "not recorded")
        uptime_after = results[-1].get("uptime_after", "not recorded")
    document: dict[str, Any] = {
        "benchmark": "index",
        "created_utc": stamp.isoformat(timespec="seconds"),
        "git_commit": git_commit(REPO),
        "command": command,
        "machine": machine_info(),
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "seed": args.seed,
        "encoder": ENCODER_NAME,
        "scales": results,
        "json_path": str(json_path.relative_to(REPO)),
    }
    if len(results) >= 2:
        document["growth"] = growth(results[0], results[-1])
    plot(results, plot_path, f"Enclave retrieval at scale — {stamp:%Y-%m-%d}")
    document["plot_path"] = str(plot_path.relative_to(REPO))
    write_json(json_path, document)
    print("\n".join(table(results, document.get("growth"))))
    print(f"wrote {json_path}")
    if not args.no_readme:
        write_section(document, args.summary)
    return 0


def write_section(document: Mapping[str, Any], summary_file: Path | None) -> None:
    """Replace the index-bench section of benchmarks/README.md (with an optional summary)."""
    from benchmarks.report import update_readme

    summary: list[str] = []
    if summary_file is not None:
        summary = [summary_file.read_text(encoding="utf-8").strip(), ""]
    update_readme(REPO / "benchmarks" / "README.md", section(document, summary), MARKERS)


if __name__ == "__main__":
    raise SystemExit(main())
