"""`deita select` as one pass against the staged path it replaced, on the same pool in the same run.

    python benchmarks/select_pass.py                          # the real 5K ShareGPT pool, then 1M synthetic
    python benchmarks/select_pass.py --records 200000         # a smaller synthetic pool
    python benchmarks/select_pass.py --records 0              # the real pool only
    python benchmarks/select_pass.py --pool none --after-only # 1M synthetic, the one pass alone (no ratio)

Before: the staged path, as standalone commands (each a subprocess): `deita dedup` → the offline length
scores (`add_length_scores`, what the old select ran; no command of its own) → `deita score --type
signals` (the offline quality signals, which count the kept records' bigrams first) → `deita embed` →
`deita filter`, each stage writing its full output and the next one reading it. After: `deita select --preset
offline --no-report` (the staged path writes no report; `--report` adds it to the one pass, one more read
for a JSON-array pool's fetch is then shared with it). Both on the offline preset's settings.

Printed per path: how often each file holding records was opened (`DEITA_COUNT_READS=1`), records fetched
by offset, bytes left in the work folder, peak RSS (the largest child's own, `wait4`), seconds; and the
ratios after/before. Also whether both selected the same records, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

POOL5K = Path(__file__).resolve().parents[2] / "shared" / "data" / "sharegpt_v3_5k.json"
SORT_KEY = "instruction_lengths,response_lengths"
TOPICS = 2000


def vocabulary(source: Path) -> list[str]:
    """Real words for the synthetic records: the distinct words of the real pool when it is here (read only
    here, never stored), else of the shipped sample."""
    if not source.exists():
        source = Path(__file__).resolve().parents[1] / "examples" / "sample.jsonl"
    words = sorted({word for word in re.findall(r"[A-Za-z]{3,12}", source.read_text(errors="replace"))})
    return words[:40_000]


def synthetic_pool(path: Path, n: int, words: list[str], seed: int = 0) -> Path:
    """`n` ShareGPT records as JSONL, 1-3 turns of 10-120 words. Each record draws most of its words from one
    of `TOPICS` topics (a few dozen words each), so that embeddings differ as real records' do; 1 % are
    exact copies of a recent record (dedup's work)."""
    rng = random.Random(seed)
    topics = [rng.sample(words, min(40, len(words))) for _ in range(TOPICS)]

    def text(topic: list[str], lo: int, hi: int) -> str:
        return " ".join(rng.choice(topic) if rng.random() < 0.8 else rng.choice(words)
                        for _ in range(rng.randint(lo, hi)))

    with open(path, "w") as f:
        previous: list[dict] = []
        for i in range(n):
            if previous and rng.random() < 0.01:
                record = {**rng.choice(previous), "id": f"r{i}"}
            else:
                topic = rng.choice(topics)
                conv = []
                for _ in range(rng.randint(1, 3)):
                    conv += [{"from": "human", "value": text(topic, 10, 40)},
                             {"from": "gpt", "value": text(topic, 20, 80)}]
                record = {"id": f"r{i}", "conversations": conv}
                previous = previous[-99:] + [record]
            f.write(json.dumps(record) + "\n")
    return path


def run(command: list[str], env: dict[str, str]) -> tuple[float, int, Counter, Counter]:
    """Run one child: (seconds, its peak RSS in bytes, reads per file, fetched records per file)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    reads = Counter({path: int(n) for n, path in re.findall(r"deita reads: (\d+) (.+)", stderr)})
    fetched = Counter({path: int(n) for n, path in re.findall(r"deita fetched: (\d+) records of (.+)", stderr)})
    return time.perf_counter() - start, usage.ru_maxrss * 1024, reads, fetched


def deita(*args: str) -> list[str]:
    return [sys.executable, "-m", "deita.cli", *map(str, args)]


LENGTHS = ("from deita.scoring.lengths import add_length_scores; import sys; "
           "add_length_scores(sys.argv[1], sys.argv[2])")


def staged(pool: Path, folder: Path, size: int, env: dict[str, str]) -> dict:
    work = folder / "sel.jsonl.work"
    work.mkdir(parents=True)
    steps = [
        deita("dedup", pool, "-o", work / "deduplicated.jsonl", "--on-error", "skip", "-q"),
        [sys.executable, "-c", LENGTHS, str(work / "deduplicated.jsonl"), str(work / "lengths.jsonl")],
        # the offline preset's quality signals (its bigram counts from the kept records: one more read here)
        deita("score", work / "lengths.jsonl", "-o", work / "scored.jsonl", "--type", "signals", "-q",
              "--cache-dir", work / "cache"),
        deita("embed", work / "scored.jsonl", "-o", work / "embeddings.npy", "--kind", "static", "-q",
              "--cache-dir", work / "cache"),
        deita("filter", work / "scored.jsonl", "--embeddings", work / "embeddings.npy", "-o", folder / "sel.jsonl",
              "--size", size, "--threshold", "0.99", "--sort-key", SORT_KEY),
    ]
    return measure(steps, env, work, folder / "sel.jsonl")


def one_pass(pool: Path, folder: Path, size: int, env: dict[str, str], report: bool) -> dict:
    step = deita("select", pool, "-o", folder / "sel.jsonl", "--preset", "offline", "--size", size, "--sort-key",
                 SORT_KEY, "--on-error", "skip", "-q", "--report" if report else "--no-report")
    return measure([step], env, folder / "sel.jsonl.work", folder / "sel.jsonl")


def measure(steps: list[list[str]], env: dict[str, str], work: Path, output: Path) -> dict:
    seconds, peak, reads, fetched = 0.0, 0, Counter(), Counter()
    for step in steps:
        s, rss, r, f = run(step, env)
        seconds, peak = seconds + s, max(peak, rss)
        reads.update(r)
        fetched.update(f)
    left = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    return {"seconds": seconds, "peak_rss": peak, "reads": reads, "fetched": fetched, "work_bytes": left,
            "sha256": hashlib.sha256(output.read_bytes()).hexdigest()}


def report(name: str, pool: Path, before: dict | None, after: dict) -> None:
    size = pool.stat().st_size
    print(f"\n## {name}: {pool} ({size / 1e6:,.1f} MB)")
    for label, result in (("before (staged)", before), ("after (one pass)", after)):
        if result is None:
            continue
        opened = result["reads"].get(str(pool.resolve()), 0)
        others = {Path(p).name: n for p, n in result["reads"].items() if p != str(pool.resolve())}
        fetched = sum(result["fetched"].values())
        print(f"{label:17} pool opened {opened}× | other files of records read: {sum(others.values())} "
              f"{dict(others) or ''} | fetched by offset {fetched:,} | work folder {result['work_bytes'] / 1e6:,.1f} MB "
              f"({result['work_bytes'] / size:.0%} of the pool) | peak RSS {result['peak_rss'] / 2**20:,.0f} MB | "
              f"{result['seconds']:,.1f} s")
    if before is None:
        return
    print(f"ratio after/before: work folder {after['work_bytes'] / max(before['work_bytes'], 1):.2f}, peak RSS "
          f"{after['peak_rss'] / before['peak_rss']:.2f}, time {after['seconds'] / before['seconds']:.2f}; "
          f"same output bytes: {before['sha256'] == after['sha256']}")


def compare(name: str, pool: Path, size: int, with_report: bool, after_only: bool = False) -> None:
    env = {**os.environ, "DEITA_COUNT_READS": "1"}
    with tempfile.TemporaryDirectory(prefix="deita-select-pass-") as tmp:
        before = None if after_only else staged(pool, Path(tmp) / "before", size, env)
        after = one_pass(pool, Path(tmp) / "after", size, env, with_report)
    report(name + (" (the one pass with its report)" if with_report else ""), pool, before, after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=POOL5K, help="a real pool (skipped when missing)")
    parser.add_argument("--records", type=int, default=1_000_000, help="synthetic pool size (0: none)")
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--report", action="store_true", help="the one pass writes its HTML report too")
    parser.add_argument("--after-only", action="store_true",
                        help="the one pass alone (its reads, work folder, RSS and time at a size where the staged "
                             "path takes too long to run beside it)")
    args = parser.parse_args()
    if args.pool.exists():
        compare("real pool", args.pool, args.size, args.report, args.after_only)
    else:
        print(f"(no real pool at {args.pool}; skipped)")
    if args.records:
        with tempfile.TemporaryDirectory(prefix="deita-synthetic-") as tmp:
            pool = synthetic_pool(Path(tmp) / "pool.jsonl", args.records, vocabulary(args.pool))
            compare(f"synthetic pool, {args.records:,} records", pool, args.size, args.report, args.after_only)


if __name__ == "__main__":
    main()
