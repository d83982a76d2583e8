"""Benchmark streaming read + atomic rewrite of a large ShareGPT file against the naive load-everything path.

    python benchmarks/io.py                  # 1M synthetic records
    python benchmarks/io.py --records 200000

Each measured path runs in its own child process, so each peak RSS (ru_maxrss) is that path's own.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path and "io.py" would shadow the stdlib module.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import json
import random
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "data",
    "model",
    "a",
    "response",
    "instruction",
    "score",
    "turn",
    "user",
    "assistant",
    "token",
]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi)))


def synthetic_records(n: int, seed: int = 0) -> Iterator[dict]:
    """``n`` synthetic ShareGPT records: 1–3 turns, a third of them split chats that open with the assistant.
    Other benchmarks (benchmarks/dedup.py) import this generator."""
    rng = random.Random(seed)
    for i in range(n):
        conv = []
        if i % 3 == 0:  # a split chat: starts with an assistant message
            conv.append({"from": "gpt", "value": _text(rng, 5, 40)})
        for _ in range(rng.randint(1, 3)):
            conv += [
                {"from": "human", "value": _text(rng, 5, 40)},
                {"from": "gpt", "value": _text(rng, 10, 80)},
            ]
        yield {"id": f"r{i}", "conversations": conv, "source": "synthetic"}


def generate(folder: Path, n: int) -> tuple[Path, Path]:
    """A JSONL file and a JSON-array file holding the same ``n`` synthetic ShareGPT records."""
    jsonl, array = folder / "pool.jsonl", folder / "pool.json"
    with open(jsonl, "w", encoding="utf-8") as fl, open(array, "w", encoding="utf-8") as fa:
        fa.write("[\n")
        for i, record in enumerate(synthetic_records(n)):
            line = json.dumps(record, ensure_ascii=False)
            fl.write(line + "\n")
            fa.write(("," if i else "") + line + "\n")
        fa.write("]\n")
    return jsonl, array


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _phase(kind: str, src: Path, out: Path) -> dict:
    """One measured path, run in a child process; returns its figures."""
    if kind == "naive":
        t = time.perf_counter()
        with open(src, encoding="utf-8") as f:
            records = json.load(f)
        with open(out, "w", encoding="utf-8") as f:
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
        n, turns = len(records), None
    else:
        from deita.data.io import ReadStats, RecordWriter, iter_records

        stats = ReadStats()
        t = time.perf_counter()
        with RecordWriter(out) as w:
            for rec in iter_records(src, stats=stats):
                w.write(rec.raw)
        n, turns = w.count, stats.turns
    return {"records": n, "turns": turns, "seconds": time.perf_counter() - t, "peak_rss_mib": _peak_mib()}


def _run_child(kind: str, src: Path, out: Path) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", kind, "--src", str(src), "--out", str(out)]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--phase", choices=("stream", "naive"), help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.src, args.out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        jsonl, array = generate(folder, args.records)
        size = {p.suffix: p.stat().st_size / 2**20 for p in (jsonl, array)}
        print(f"generated {args.records:,} records in {time.perf_counter() - t:.1f} s "
              f"(JSONL {size['.jsonl']:.0f} MiB, JSON array {size['.json']:.0f} MiB)")  # fmt: skip
        runs = {
            "stream JSONL -> JSONL (iter_records + RecordWriter)": _run_child(
                "stream", jsonl, folder / "out.jsonl"
            ),
            "stream JSON array -> JSON array": _run_child("stream", array, folder / "out.json"),
            "naive json.load + dump (JSON array)": _run_child("naive", array, folder / "naive.json"),
        }
        for name, r in runs.items():
            print(f"{name:55s} {r['records']:>9,} rec  {r['seconds']:7.2f} s  "
                  f"{r['records'] / r['seconds']:>9,.0f} rec/s  peak RSS {r['peak_rss_mib']:7.0f} MiB")  # fmt: skip
        stream, naive = runs["stream JSON array -> JSON array"], runs["naive json.load + dump (JSON array)"]
        print(f"naive / streaming (JSON array): time x{naive['seconds'] / stream['seconds']:.2f}, "
              f"peak RSS x{naive['peak_rss_mib'] / stream['peak_rss_mib']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
