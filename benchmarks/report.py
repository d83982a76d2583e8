"""Benchmark `deita report` on a large pool: 1M scored records, 4,096-d float16 embeddings (8 GB, memory-mapped).

    python benchmarks/report.py                     # 1M records, 4,096 dims, 6,000 selected
    python benchmarks/report.py --records 100000 --dim 1024

Targets (2 cores): the report in ≤ 60 s with anonymous RSS ≤ 2 GB (mapped file pages are not counted). The
reference measured in the same run is the floor of any report: one plain `json.loads` pass over the pool.
Each measured step runs in its own child process, so its memory figures are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

WORDS = "the of and to in is data model a response instruction score turn user assistant token".split()


def generate(folder: Path, n: int, dim: int, size: int) -> dict[str, Path]:
    """A scored pool (JSONL), its embeddings (.npy, float16, planted near-copies), a selection and its stats."""
    from deita.selection.deita import deita_filter
    from deita.selection.run import FilterReport

    rng = random.Random(0)
    pool = folder / "scored.jsonl"
    with open(pool, "w", encoding="utf-8") as out:
        for i in range(n):
            turns = rng.randint(1, 3)
            conversation = []
            for _ in range(turns):
                conversation += [{"from": "human", "value": " ".join(rng.choices(WORDS, k=rng.randint(5, 40)))},
                                 {"from": "gpt", "value": " ".join(rng.choices(WORDS, k=rng.randint(10, 80)))}]
            record = {"id": f"r{i}", "source": f"set{i % 4}", "conversations": conversation,
                      "complexity_scores": [round(rng.uniform(1, 6), 4) for _ in range(turns)],
                      "quality_scores": [round(rng.uniform(1, 6), 4) for _ in range(turns)]}
            out.write(json.dumps(record) + "\n")
    embeddings = folder / "embeddings.npy"
    array = np.lib.format.open_memmap(embeddings, mode="w+", dtype=np.float16, shape=(n, dim))
    generator = np.random.default_rng(0)
    for lo in range(0, n, 50_000):
        block = generator.standard_normal((min(50_000, n - lo), dim)).astype(np.float16)
        block[::50] = block[1::50][: len(block[::50])] if len(block) > 1 else block[::50]  # planted near-copies
        array[lo : lo + len(block)] = block
    array.flush()
    del array
    scores = np.empty(n)
    with open(pool, encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            record = json.loads(line)
            scores[i] = sum(c * q for c, q in zip(record["complexity_scores"], record["quality_scores"], strict=True))
    result = deita_filter(scores, np.load(embeddings, mmap_mode="r"), size, 0.9)
    wanted = {int(index): rank for rank, index in enumerate(result.indices)}
    chosen: list[str] = [""] * len(wanted)
    with open(pool, encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i in wanted:
                chosen[wanted[i]] = line
    selected = folder / "selected.jsonl"
    selected.write_text("".join(chosen), encoding="utf-8")
    stats = folder / "stats.json"
    report = FilterReport(n, len(result.indices), result.n_examined, 0.9, "deita", result.seconds,
                          ("complexity_scores", "quality_scores"), selected, result)
    stats.write_text(json.dumps(report.stats()))
    return {"pool": pool, "embeddings": embeddings, "selected": selected, "stats": stats}


def _peak_anonymous_mib(stop: threading.Event, peak: list[float]) -> None:
    """Sample RssAnon (private memory; mapped file pages are RssFile) every 50 ms."""
    while not stop.is_set():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        stop.wait(0.05)


def phase(kind: str, args: argparse.Namespace) -> dict:
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=_peak_anonymous_mib, args=(stop, peak), daemon=True)
    sampler.start()
    start = time.perf_counter()
    if kind == "reference":
        with open(args.pool, encoding="utf-8") as handle:
            records = sum(1 for line in handle if json.loads(line))
    else:
        from deita.report.run import report_file

        report_file(args.selected, args.pool, args.out, args.embeddings, args.stats)
        records = None
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    return {"seconds": seconds, "peak_anon_mib": peak[0], "records": records}


def run_child(kind: str, paths: dict[str, Path], out: Path) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--phase", kind, "--out", str(out),
               *[f"--{name}={path}" for name, path in paths.items()]]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--size", type=int, default=6000)
    parser.add_argument("--folder", type=Path, help="keep the generated files here (default: a temporary folder)")
    for name in ("phase", "out", "pool", "embeddings", "selected", "stats"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.folder or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        paths = generate(folder, args.records, args.dim, args.size)
        size_gb = paths["embeddings"].stat().st_size / 1e9
        print(f"generated {args.records:,} scored records, {args.dim}-d float16 embeddings ({size_gb:.1f} GB) and "
              f"a selection of {args.size:,} in {time.perf_counter() - start:.0f} s")
        reference = run_child("reference", paths, folder / "unused.html")
        report = run_child("report", paths, folder / "report.html")
        print(f"reference (one json.loads pass over the pool): {reference['seconds']:6.1f} s, "
              f"anonymous RSS {reference['peak_anon_mib']:,.0f} MiB")
        print(f"deita report:                                   {report['seconds']:6.1f} s, "
              f"anonymous RSS {report['peak_anon_mib']:,.0f} MiB")
        print(f"report / reference time: {report['seconds'] / reference['seconds']:.2f}x; "
              f"targets: report <= 60 s ({'met' if report['seconds'] <= 60 else 'NOT met'}), "
              f"anonymous RSS <= 2,048 MiB ({'met' if report['peak_anon_mib'] <= 2048 else 'NOT met'})")


if __name__ == "__main__":
    main()
