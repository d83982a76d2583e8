"""I/O at disk speed: `deita convert`, `validate` and `filter` against a plain orjson loop, on one file.

    python benchmarks/io.py                    # 1M synthetic scored ShareGPT records (~1 GB JSONL)
    python benchmarks/io.py --records 200000

The reference, timed in the same run on the same file, is the simplest fast streaming loop there is:
read a line, `orjson.loads`, add a field, `orjson.dumps`, write. Every deita figure is the real command
run as a subprocess (start-up, imports and all); its peak RSS is that child's own (`wait4`).

The duplicate-key check of the reader (issue 21) is timed in this process: the same file read through
`iter_records` with the check on, with it off (jiter's `catch_duplicate_keys`), and through the orjson parse
the reader had before jiter (no duplicate check: `orjson_loads` below), alternately, best of 9 each; target
≤ 1.05×. `--real FILE` times it on a real pool too (e.g. /work/shared/data/sharegpt_v3_5k.json as it is, and
written out as JSONL four times over); `--duplicate-keys-only` skips the commands.

Targets (issue 16): convert ≤ 2× the loop with peak RSS ≤ 200 MB; validate ≤ 1.5×; filter with a
1M×384 float16 embedding file → 10K ≤ 3×, end to end. It also prints how many times each stage reads
its input (`DEITA_COUNT_READS=1` makes every deita command report its reads at exit).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path and "io.py" would shadow the stdlib module.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import itertools
import json
import random
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the tiny model's save progress bar

_WORDS = ["the", "of", "and", "to", "in", "is", "data", "model", "a", "response", "instruction", "score",
          "turn", "user", "assistant", "token", "Grüße", "你好"]
TARGETS = {"convert": 2.0, "validate": 1.5, "filter": 3.0}
RSS_TARGET_MB = 200


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(lo, hi)))


def synthetic_records(n: int, seed: int = 0) -> Iterator[dict]:
    """``n`` ShareGPT records, a third of them split chats, each with per-turn Deita scores.
    Other benchmarks (benchmarks/dedup.py) import this generator."""
    rng = random.Random(seed)
    for i in range(n):
        conv = [{"from": "gpt", "value": _text(rng, 5, 40)}] if i % 3 == 0 else []
        turns = rng.randint(1, 3)
        for _ in range(turns):
            conv += [{"from": "human", "value": _text(rng, 5, 40)}, {"from": "gpt", "value": _text(rng, 10, 80)}]
        yield {"id": f"r{i}", "conversations": conv, "source": "synthetic",
               "complexity_scores": [round(rng.uniform(1, 6), 4) for _ in range(turns)],
               "quality_scores": [round(rng.uniform(1, 6), 4) for _ in range(turns)]}


def generate(path: Path, n: int) -> None:
    """The JSONL pool of ``n`` synthetic records."""
    with open(path, "wb") as f:
        for record in synthetic_records(n):
            f.write(orjson.dumps(record) + b"\n")


def embeddings(path: Path, n: int, dim: int = 384) -> None:
    """Unit-norm random float16 rows, written in blocks through a memmap."""
    rng = np.random.default_rng(0)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        array[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    array.flush()
    del array


REFERENCE = """
import orjson, sys
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    for line in src:
        record = orjson.loads(line)
        record["seen"] = True
        dst.write(orjson.dumps(record) + b"\\n")
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Wall time, peak RSS and read counts of one command; a fresh helper process runs it, so the peak
    RSS (RUSAGE_CHILDREN) is exactly that command's."""
    helper = ("import json, os, subprocess, sys, time, resource\n"
              "t = time.perf_counter()\n"
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "s = time.perf_counter() - t\n"
              "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
              "print(json.dumps({'seconds': s, 'cpu': u.ru_utime + u.ru_stime, 'rss_mb': u.ru_maxrss / 1024, "
              "'rc': p.returncode, 'stdout': p.stdout, 'stderr': p.stderr}))\n")
    done = subprocess.run([sys.executable, "-c", helper, *cmd], capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result['rc']}):\n{result['stderr'][-3000:]}")
    reads: dict[str, int] = defaultdict(int)
    for line in result["stderr"].splitlines():
        if line.startswith("deita reads: "):
            count, path = line.removeprefix("deita reads: ").split(" ", 1)
            reads[path] += int(count)
    result["reads"] = dict(reads)
    return result


def deita(*args: str) -> list[str]:
    return [sys.executable, "-m", "deita.cli", *args]


def reads_of(result: dict, path: Path) -> int:
    return result["reads"].get(str(path.resolve()), 0)


def stage_reads(folder: Path, env: dict[str, str]) -> list[tuple[str, int]]:
    """Reads of its input by every per-record stage, on a small file: score (a tiny random LLaMA),
    embed, and the offline preset's lengths stage (via `deita select --preset offline`)."""
    from deita.testing import save_random_causal_lm

    small = folder / "small.jsonl"
    with open(folder / "pool.jsonl", "rb") as src, open(small, "wb") as dst:
        dst.writelines(itertools.islice(src, 200))
    model = save_random_causal_lm(folder / "tiny-llama", "tiny-llama")
    score = run_measured(deita("score", str(small), "-o", str(folder / "s.jsonl"), "--model", str(model),
                               "--type", "complexity", "--device", "cpu", "-q"), env)
    embed = run_measured(deita("embed", str(small), "-o", str(folder / "e.npy"), "-q"), env)
    no_report = folder / "no-report.yaml"
    no_report.write_text("report: {write: false}\n")
    bare = run_measured(deita("select", str(small), "-o", str(folder / "bare.jsonl"), "--preset", "offline",
                              "--size", "50", "-q", "--config", str(no_report)), env)
    select = run_measured(deita("select", str(small), "-o", str(folder / "sel.jsonl"), "--preset", "offline",
                                "--size", "50", "-q"), env)
    bare_scored = folder / "bare.jsonl.work" / "scored.jsonl"
    scored = folder / "sel.jsonl.work" / "scored.jsonl"
    return [("score", reads_of(score, small)), ("embed", reads_of(embed, small)),
            ("lengths (select --preset offline, its input)", reads_of(select, small)),
            ("embed + filter (select without its report, scored.jsonl)", reads_of(bare, bare_scored)),
            ("embed + filter + report (select, scored.jsonl)", reads_of(select, scored))]


DUPLICATE_KEYS_TARGET = 1.05


_DIGITS_OPENERS = bytes(b for b in range(256) if b not in b"0123456789{[")
_DIGITS_ONLY = bytes(57 if 48 <= b <= 57 else 32 for b in range(256))


def orjson_loads(data: bytes) -> object:
    """The reader's fast parse before jiter, without any duplicate-key check (a reference): orjson's value,
    or ``SLOW`` where the stdlib must decide (orjson refuses it, a run of 19 digits may be an integer orjson
    turns into a float, more brackets than ``MAX_NESTING``)."""
    from deita.data import checks

    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return checks.SLOW
    marks = data.translate(None, _DIGITS_OPENERS)
    openers = marks.count(b"{") + marks.count(b"[")
    if openers > checks.MAX_NESTING or (len(marks) - openers >= 19 and b"9" * 19 in data.translate(_DIGITS_ONLY)):
        return checks.SLOW
    return value


def duplicate_key_cost(path: Path, rounds: int = 9) -> tuple[dict[str, float], int]:
    """Seconds of reading ``path`` through ``iter_records`` with the check ("on"), without it ("off"), and
    with the orjson parse ("orjson"), best of ``rounds`` each, alternating so load drift hits all; and the
    record count."""
    from deita.data import checks
    from deita.data.io import RecordPolicy, iter_records
    from deita.data.readers import jsonl, text

    best = {"on": float("inf"), "off": float("inf"), "orjson": float("inf")}
    count = 0
    try:
        for _ in range(rounds):
            for mode in best:
                checks.CHECK_DUPLICATE_KEYS = mode == "on"
                jsonl.fast_loads = text.fast_loads = orjson_loads if mode == "orjson" else checks.fast_loads
                start = time.perf_counter()
                count = sum(1 for _ in iter_records(path, policy=RecordPolicy.skipping(None, write=False)))
                best[mode] = min(best[mode], time.perf_counter() - start)
    finally:
        checks.CHECK_DUPLICATE_KEYS = True
        jsonl.fast_loads = text.fast_loads = checks.fast_loads
    return best, count


def report_duplicate_keys(name: str, path: Path) -> None:
    best, count = duplicate_key_cost(path)
    print(f"duplicate-key check, {name}: {count:,} records read in {best['on']:.3f} s with it, {best['off']:.3f} s "
          f"without it, {best['orjson']:.3f} s through orjson without it")
    for label, key in (("the same reader without it", "off"), ("the orjson reader without it", "orjson")):
        ratio = best["on"] / best[key]
        verdict = "ok" if ratio <= DUPLICATE_KEYS_TARGET else "MISSED"
        print(f"  {ratio:.3f}× {label} (target ≤ {DUPLICATE_KEYS_TARGET}×)  {verdict}")


def real_pool_jsonl(source: Path, folder: Path, copies: int = 4) -> Path:
    """A real pool (JSON array or JSONL) written as JSONL ``copies`` times over, for a steadier timing."""
    from deita.data.readers import ReadStats, read_items

    records = [raw for _, _, raw, problem in read_items(source, ReadStats()) if problem is None]
    path = folder / "real.jsonl"
    with open(path, "wb") as f:
        for _ in range(copies):
            f.writelines(orjson.dumps(record) + b"\n" for record in records)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--folder", type=Path, help="Work folder (default: a temporary one, removed after).")
    ap.add_argument("--real", type=Path, help="A real pool to time the duplicate-key check on too.")
    ap.add_argument("--duplicate-keys-only", action="store_true", help="Time only the duplicate-key check.")
    args = ap.parse_args()
    env = {**os.environ, "DEITA_COUNT_READS": "1"}
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        pool, emb = folder / "pool.jsonl", folder / "emb.npy"
        t = time.perf_counter()
        generate(pool, args.records)
        embeddings(emb, args.records)
        print(f"generated {args.records:,} scored ShareGPT records ({pool.stat().st_size / 1e6:,.0f} MB JSONL) and "
              f"{args.records:,}×384 float16 embeddings in {time.perf_counter() - t:.1f} s")
        subprocess.run(["cat", str(pool), str(emb)], stdout=subprocess.DEVNULL, check=True)  # into page cache
        report_duplicate_keys("synthetic pool", pool)
        if args.real is not None:
            report_duplicate_keys(f"{args.real.name} (as it is)", args.real)
            report_duplicate_keys(f"{args.real.name} (JSONL, 4 copies)", real_pool_jsonl(args.real, folder))
        if args.duplicate_keys_only:
            return
        commands = {
            "convert": deita("convert", str(pool), "-o", str(folder / "conv.jsonl"), "--to", "sharegpt"),
            "validate": deita("validate", str(pool)),
            "filter": deita("filter", str(pool), "--embeddings", str(emb), "-o", str(folder / "sel.jsonl"),
                            "--size", "10000"),
        }
        reference = [sys.executable, "-c", REFERENCE, str(pool), str(folder / "ref.jsonl")]
        refs = [run_measured(reference)]
        runs = {}
        for name, cmd in commands.items():  # each command between two reference runs: load drifts on a shared machine
            runs[name] = run_measured(cmd, env)
            refs.append(run_measured(reference))
        walls = ", ".join(f"{r['seconds']:.2f}" for r in refs)
        cpus = ", ".join(f"{r['cpu']:.2f}" for r in refs)
        print(f"reference: orjson read + add a field + write loop, run before and after each command: {walls} s "
              f"(CPU {cpus} s); peak RSS {refs[0]['rss_mb']:.0f} MB")
        print(f"{'command':10s} {'seconds':>8s} {'× loop':>7s} {'CPU s':>7s} {'× loop':>7s} {'target':>7s} "
              f"{'peak RSS':>9s}  reads of the input")
        for i, (name, r) in enumerate(runs.items()):
            around = refs[i : i + 2]
            wall = r["seconds"] / (sum(x["seconds"] for x in around) / 2)
            cpu = r["cpu"] / (sum(x["cpu"] for x in around) / 2)
            rss_ok = name != "convert" or r["rss_mb"] <= RSS_TARGET_MB
            ok = ("ok" if wall <= TARGETS[name] else "wall MISSED, CPU ok" if cpu <= TARGETS[name] else "MISSED") \
                if rss_ok else "RSS MISSED"
            print(f"{name:10s} {r['seconds']:8.2f} {wall:6.2f}× {r['cpu']:7.2f} {cpu:6.2f}× {TARGETS[name]:6.1f}× "
                  f"{r['rss_mb']:6.0f} MB  {reads_of(r, pool)}   {ok}")
        print("(× loop: against the mean of the reference runs just before and after the command, wall and CPU time)")
        print(f"convert peak RSS target: ≤ {RSS_TARGET_MB} MB")
        print("filter says: " + runs["filter"]["stdout"].strip().splitlines()[-1])
        print("reads per stage (times each stage opens its input file):")
        print(f"  {'filter (the run above)':58s} {reads_of(runs['filter'], pool)}")
        for name, count in stage_reads(folder, env):
            print(f"  {name:58s} {count}")


if __name__ == "__main__":
    main()
