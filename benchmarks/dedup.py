"""Benchmark `deita dedup` and `deita decontaminate` on a large synthetic ShareGPT pool, against datasketch.

    python benchmarks/dedup.py                    # 1M records, datasketch baseline on a 100K subset
    python benchmarks/dedup.py --records 100000   # a quicker run
    pip install -e ".[bench]"                     # datasketch, for the baseline and the library choice

The pool is benchmarks/io.py's synthetic records with planted copies: 5 % exact copies in another form
(case, spacing, fullwidth letters), 5 % near copies (one word of one message replaced), and 500 records whose
first instruction is one of 1,000 eval prompts (verbatim or inside a longer message).

Parts, each in its own child process so each peak RSS (ru_maxrss) is that part's own:
- library choice: MinHash signatures of the same shingle hashes with rensa and with datasketch;
- full run: `dedup_file`, exact + near, on the whole pool (target: ≤ 5 min, peak RSS ≤ 3 GB on two cores);
- baseline: datasketch's plain MinHash + MinHashLSH loop on the first 100K records, and deita on the same
  subset, with the ratio;
- decontamination: the whole pool against the 1,000 eval prompts by 13-grams (target: ≤ 2 min).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and benchmarks/io.py would shadow the stdlib module.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import importlib.util
import itertools
import json
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path

THRESHOLD, NGRAM, NUM_PERM = 0.8, 5, 128
BASELINE_RECORDS = 100_000
EVAL_PROMPTS, PLANTED_EVAL = 1000, 500
FULLWIDTH = {c: c + 0xFEE0 for c in range(0x61, 0x7B)}


def _io_benchmark():
    """benchmarks/io.py as a module (its name would shadow the stdlib's io), for its record generator."""
    spec = importlib.util.spec_from_file_location("deita_io_benchmark", Path(__file__).with_name("io.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exact_variant(record: dict, rng: random.Random) -> dict:
    conv = []
    for message in record["conversations"]:
        words = message["value"].split(" ")
        words = [w.upper() if rng.random() < 0.2 else w.translate(FULLWIDTH) if rng.random() < 0.05 else w
                 for w in words]
        conv.append({**message, "value": "  " + "   ".join(words) + "\n"})
    return {**record, "conversations": conv}


def _near_variant(record: dict, rng: random.Random, vocabulary: list[str]) -> dict:
    conv = [dict(m) for m in record["conversations"]]
    message = conv[rng.randrange(len(conv))]
    words = message["value"].split(" ")
    spot = rng.randrange(len(words))
    words[spot] = rng.choice([w for w in vocabulary if w != words[spot]])
    message["value"] = " ".join(words)
    return {**record, "conversations": conv}


def generate(folder: Path, n: int) -> dict:
    """pool.jsonl (n records), evals.jsonl; returns what was planted."""
    io_bench = _io_benchmark()
    rng = random.Random(1)
    vocabulary = io_bench._WORDS
    prompts = [" ".join(rng.choices(vocabulary, k=rng.randint(20, 40))) for _ in range(EVAL_PROMPTS)]
    with open(folder / "evals.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"question_id": number, "turns": [prompt]}) + "\n"
                     for number, prompt in enumerate(prompts))
    recent: list[dict] = []  # copies are made of the last 20K records: memory stays small
    planted = {"exact": [], "near": [], "eval": []}
    eval_spots = set(rng.sample(range(n), min(PLANTED_EVAL, n)))
    with open(folder / "pool.jsonl", "w", encoding="utf-8") as out:
        for index, record in enumerate(io_bench.synthetic_records(n)):
            roll = rng.random()
            if index in eval_spots:
                prompt = prompts[rng.randrange(EVAL_PROMPTS)]
                first = next(m for m in record["conversations"] if m["from"] == "human")
                first["value"] = prompt if rng.random() < 0.5 else f"{first['value']} {prompt} thanks"
                planted["eval"].append(record["id"])
            elif recent and roll < 0.05:
                source = rng.choice(recent)
                record = {**_exact_variant(source, rng), "id": f"x{index}"}
                planted["exact"].append((record["id"], source["id"]))
            elif recent and roll < 0.10:
                source = rng.choice(recent)
                record = {**_near_variant(source, rng, vocabulary), "id": f"n{index}"}
                planted["near"].append((record["id"], source["id"], _jaccard(record, source)))
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if index not in eval_spots:  # copies of a contaminated record would be contaminated too
                recent.append(record)
            if len(recent) > 20_000:
                recent = recent[10_000:]
    return planted


def _shingles(record: dict) -> set:
    """The reference shingle set: each message's role then its words, runs of NGRAM words."""
    from deita.data.formats import role_messages
    from deita.dedup.normalize import words

    sequence = [w for role, text in role_messages(record, "sharegpt") for w in (role, *words(text))]
    if len(sequence) < NGRAM:
        return {tuple(sequence)}
    return {tuple(sequence[i:i + NGRAM]) for i in range(len(sequence) - NGRAM + 1)}


def _jaccard(a: dict, b: dict) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- phases (each in a child process)


def phase_dedup(src: Path, out: Path) -> dict:
    from deita.dedup.config import DedupConfig
    from deita.dedup.run import dedup_file
    from deita.runtime.options import RunOptions

    start = time.perf_counter()
    report = dedup_file(src, out, DedupConfig(), RunOptions(quiet=True))
    seconds = time.perf_counter() - start
    removed = {}
    with open(str(out) + ".duplicates.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            removed[row["id"]] = row["kind"]
    helper = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the hashing helper process
    return {"seconds": seconds, "peak_rss_mib": _peak_mib(), "helper_rss_mib": helper, "records": report.records,
            "exact": report.exact,
            "near": report.near, "verified": report.verified, "compared": report.compared, "removed": removed}


def phase_datasketch(src: Path) -> dict:
    """The plain datasketch loop: one MinHash per record (update_batch of its shingles), query the LSH, insert
    the record if nothing similar is there yet. Same text and shingles as deita."""
    from datasketch import MinHash, MinHashLSH

    from deita.data.io import ReadStats, iter_records
    from deita.dedup.normalize import compared_texts, field_messages

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    stats = ReadStats()
    removed = {}
    for record in iter_records(src, stats=stats):
        words = compared_texts(field_messages(record, stats.format, "all"))[1].split()
        shingles = {" ".join(words[i:i + NGRAM]).encode() for i in range(max(len(words) - NGRAM + 1, 1))}
        minhash = MinHash(num_perm=NUM_PERM)
        minhash.update_batch(list(shingles))
        if lsh.query(minhash):
            removed[record.raw["id"]] = "near"
        else:
            lsh.insert(record.raw["id"], minhash)
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_mib(), "records": stats.records,
            "removed": removed}


def phase_choice(src: Path, records: int) -> dict:
    """Signatures of the same shingle hashes: rensa's digest matrix (into numpy) vs datasketch, one MinHash
    per record (its fastest plain path: update_batch of pre-hashed shingles, identity hash function). Estimate
    errors on 3,000 pairs of a text and an edited copy (2–20 % of its words replaced)."""
    import numpy as np
    from datasketch import MinHash

    from deita.data.io import ReadStats, iter_records
    from deita.dedup.minhash import ngram_hashes, signatures, word_hashes
    from deita.dedup.normalize import compared_texts, field_messages

    stats = ReadStats()
    texts = [compared_texts(field_messages(r, stats.format, "all"))[1]
             for r in itertools.islice(iter_records(src, stats=stats), records)]
    rng = random.Random(0)
    vocabulary = sorted({w for text in texts[:100] for w in text.split()})
    pairs = min(3000, len(texts))
    for text in texts[:pairs]:
        rate = rng.uniform(0.02, 0.2)
        texts.append(" ".join(rng.choice(vocabulary) if rng.random() < rate else w for w in text.split()))
    grams = ngram_hashes(word_hashes(texts), NGRAM)
    hashes32 = (grams.hashes >> np.uint64(32)).astype(np.uint64)  # datasketch's hash functions give 32 bits
    start = time.perf_counter()
    rensa_sigs = signatures(grams.hashes, grams.offsets, NUM_PERM)
    rensa_seconds = time.perf_counter() - start
    start = time.perf_counter()
    datasketch_sigs = []
    template = MinHash(num_perm=NUM_PERM, hashfunc=int)
    for row in range(len(texts)):
        minhash = MinHash(num_perm=NUM_PERM, hashfunc=int, permutations=template.permutations,
                          scheme=template.scheme)
        minhash.update_batch(hashes32[grams.offsets[row]:grams.offsets[row + 1]].tolist())
        datasketch_sigs.append(minhash)
    datasketch_seconds = time.perf_counter() - start
    errors: dict[str, list[float]] = {"rensa": [], "datasketch": []}
    offsets = grams.offsets
    for a in range(pairs):
        b = records + a if records + a < len(texts) else len(texts) - pairs + a
        set_a = set(grams.hashes[offsets[a]:offsets[a + 1]].tolist())
        set_b = set(grams.hashes[offsets[b]:offsets[b + 1]].tolist())
        truth = len(set_a & set_b) / len(set_a | set_b)
        errors["rensa"].append(float((rensa_sigs[a] == rensa_sigs[b]).mean()) - truth)
        errors["datasketch"].append(datasketch_sigs[a].jaccard(datasketch_sigs[b]) - truth)
    out = {"records": len(texts), "rensa_seconds": rensa_seconds, "datasketch_seconds": datasketch_seconds,
           "rensa_bytes": int(rensa_sigs.nbytes),
           "datasketch_bytes": int(sum(m.hashvalues.nbytes for m in datasketch_sigs)),  # + an object per record
           "peak_rss_mib": _peak_mib()}
    for name, values in errors.items():
        out[f"{name}_bias"] = float(np.mean(values))
        out[f"{name}_error"] = float(np.mean(np.abs(values)))
    return out


def phase_decontaminate(src: Path, evals: Path, out: Path) -> dict:
    from deita.dedup.config import DecontaminateConfig
    from deita.dedup.decontaminate_file import decontaminate_file
    from deita.runtime.options import RunOptions

    start = time.perf_counter()
    report = decontaminate_file(src, out, DecontaminateConfig(against=(str(evals),)), RunOptions(quiet=True))
    with open(str(out) + ".contaminated.jsonl", encoding="utf-8") as f:
        found = [json.loads(line)["id"] for line in f]
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_mib(), "records": report.records,
            "removed": report.by_ngram, "found": found}


def _child(*args: object) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *map(str, args)]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _recall(removed: dict, planted: list, strong_only: bool = True) -> tuple[int, int]:
    """(caught, total) of planted copies: caught when the copy or its source is gone."""
    pairs = [p for p in planted if not strong_only or p[2] >= THRESHOLD + 0.05]
    return sum(copy in removed or source in removed for copy, source, *_ in pairs), len(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--phase", choices=("dedup", "datasketch", "choice", "decontaminate"), help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--evals", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        if args.phase == "dedup":
            result = phase_dedup(args.src, args.out)
        elif args.phase == "datasketch":
            result = phase_datasketch(args.src)
        elif args.phase == "choice":
            result = phase_choice(args.src, 20_000)
        else:
            result = phase_decontaminate(args.src, args.evals, args.out)
        print(json.dumps(result))
        return
    print(f"{os.cpu_count()} CPU cores visible; load average before the run {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("DEITA_BENCH_DIR")) as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        planted = generate(folder, args.records)
        pool = folder / "pool.jsonl"
        print(f"generated {args.records:,} records ({pool.stat().st_size / 2**20:,.0f} MiB JSONL) in "
              f"{time.perf_counter() - start:.0f} s: planted {len(planted['exact']):,} exact copies in another form, "
              f"{len(planted['near']):,} one-word edits ({sum(p[2] >= THRESHOLD + 0.05 for p in planted['near']):,} "
              f"of them with true Jaccard ≥ {THRESHOLD + 0.05:.2f}), {len(planted['eval'])} eval prompts")

        choice = _child("--phase", "choice", "--src", pool)
        print(f"\nlibrary choice, {choice['records']:,} texts, the same shingle hashes (one process):")
        for name in ("rensa", "datasketch"):
            print(f"  {name:10s} {choice[f'{name}_seconds']:6.2f} s  "
                  f"{choice['records'] / choice[f'{name}_seconds']:>9,.0f} signatures/s  "
                  f"{choice[f'{name}_bytes'] / choice['records']:>5,.0f} bytes/signature  "
                  f"estimate − Jaccard: mean {choice[f'{name}_bias']:+.4f}, mean abs {choice[f'{name}_error']:.4f}")
        print(f"  rensa / datasketch: x{choice['datasketch_seconds'] / choice['rensa_seconds']:.1f} faster")

        full = _child("--phase", "dedup", "--src", pool, "--out", folder / "out.jsonl")
        caught, strong = _recall(full["removed"], planted["near"])
        exact_caught = sum(copy in full["removed"] or source in full["removed"] for copy, source in planted["exact"])
        print(f"\nfull run, deita dedup (exact + near) on {full['records']:,} records: {full['seconds']:.1f} s "
              f"({full['records'] / full['seconds']:,.0f} records/s), peak RSS {full['peak_rss_mib']:,.0f} MiB "
              f"+ {full['helper_rss_mib']:,.0f} MiB in the hashing helper process")
        print(f"  removed {full['exact']:,} exact and {full['near']:,} near; planted exact copies caught "
              f"{exact_caught:,}/{len(planted['exact']):,}, planted near copies (Jaccard ≥ {THRESHOLD + 0.05:.2f}) "
              f"caught {caught:,}/{strong:,}; {full['verified']:,} of {full['compared']:,} candidate pairs verified "
              "on exact shingle sets")

        subset = folder / "subset.jsonl"
        with open(pool, encoding="utf-8") as f, open(subset, "w", encoding="utf-8") as out:
            out.writelines(itertools.islice(f, BASELINE_RECORDS))
        ours = _child("--phase", "dedup", "--src", subset, "--out", folder / "subset_out.jsonl")
        theirs = _child("--phase", "datasketch", "--src", subset)
        with open(subset, encoding="utf-8") as f:
            subset_ids = {json.loads(line)["id"] for line in f}
        near_in = [p for p in planted["near"] if p[0] in subset_ids]
        print(f"\nbaseline, first {min(BASELINE_RECORDS, args.records):,} records:")
        for name, run in (("deita dedup (exact + near, writes OUT)", ours),
                          ("datasketch MinHash + MinHashLSH loop", theirs)):
            caught, strong = _recall(run["removed"], near_in)
            print(f"  {name:40s} {run['seconds']:7.1f} s  {run['records'] / run['seconds']:>8,.0f} records/s  "
                  f"peak RSS {run['peak_rss_mib']:6,.0f} MiB  removed {len(run['removed']):,}  near copies caught "
                  f"{caught:,}/{strong:,}")
        print(f"  datasketch / deita: time x{theirs['seconds'] / ours['seconds']:.1f}")

        cleaned = _child("--phase", "decontaminate", "--src", pool, "--evals", folder / "evals.jsonl",
                         "--out", folder / "clean.jsonl")
        found = set(cleaned["found"])
        print(f"\ndecontamination, {cleaned['records']:,} records against {EVAL_PROMPTS:,} eval prompts (13-grams, "
              f"first instruction): {cleaned['seconds']:.1f} s ({cleaned['records'] / cleaned['seconds']:,.0f} "
              f"records/s), peak RSS {cleaned['peak_rss_mib']:,.0f} MiB; removed {cleaned['removed']:,}: planted "
              f"{len(found & set(planted['eval'])):,}/{len(planted['eval']):,} found, "
              f"{len(found - set(planted['eval'])):,} others")
        print(f"load average after the run {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
