"""`deita score` end to end on 1K records: the fixed cost (start-up, model load, compilation) against the
steady rate, first with a cold on-disk compile cache and then with the same cache warm.

    python benchmarks/score_cli.py --model DIR --data FILE --json score_cli.json

It runs the command itself (`python -m deita.cli score ... --type quality`, what the `deita` script runs),
twice, each into a new output (no shard is resumed), with TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR set
to one new folder: the first run compiles into it, the second reads the compiled layers back. With
`--progress-interval 0 --shard-size 128` (the default of --shard-size) the command prints a line as each shard of 128 records is done; this
script stamps each line as it arrives. The steady rate is the records between the first and the last line
over the time between them; the fixed cost is the run's wall time less its records over that rate.
Targets (issue 24): fixed cost ≤ 30 s; does the warm cache bring it under 10 s?
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _prefill import SHAREGPT

PROGRESS = re.compile(r"^[^:]+: ([\d,]+) records, ")


def first_records(source: Path, n: int, target: Path) -> int:
    """The first `n` records of the file as they are (bad ones included: the command skips them)."""
    data = json.loads(source.read_text(encoding="utf-8"))[:n]
    target.write_text("".join(json.dumps(record) + "\n" for record in data))
    return len(data)


def timed_run(command: list[str], env: dict[str, str]) -> dict:
    """Run `command`, stamping each progress line; wall time, (seconds, records) marks and the last lines."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    marks, lines = [], []
    assert process.stdout is not None
    for line in process.stdout:
        now = time.perf_counter() - start
        lines.append(line.rstrip())
        match = PROGRESS.match(line)
        if match:
            marks.append((now, int(match.group(1).replace(",", ""))))
    code = process.wait()
    wall = time.perf_counter() - start
    return {"exit_code": code, "wall_seconds": wall, "marks": marks, "tail": lines[-6:]}


def split(run: dict) -> dict:
    """Steady records/s between the first and last progress lines; fixed cost = wall − records ÷ steady rate."""
    marks = run.pop("marks")
    if run["exit_code"] != 0 or len(marks) < 2:
        return {**run, "progress_lines": len(marks)}
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    steady = (n1 - n0) / (t1 - t0)
    return {**run, "progress_lines": len(marks), "records": n1, "steady_records_per_s": steady,
            "fixed_seconds": run["wall_seconds"] - n1 / steady, "first_shard_done_at_s": t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="scorer folder (gpu_model.py builds one)")
    parser.add_argument("--data", type=Path, default=SHAREGPT, help="ShareGPT JSON (real conversations)")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--type", default="quality", choices=("quality", "complexity"))
    parser.add_argument("--shard-size", type=int, default=128, help="records per progress line")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="pass --compile/--no-compile (default: the command's own, on with a GPU)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict = {"benchmark": "score_cli", "model": str(args.model), "type": args.type,
                     "shard_size": args.shard_size}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "records.jsonl"
        figures["input_records"] = first_records(args.data, args.records, data)
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"),
               "TRITON_CACHE_DIR": str(folder / "triton")}
        compile_flag = [] if args.compile is None else ["--compile" if args.compile else "--no-compile"]
        for name in ("cold_cache", "warm_cache"):
            command = [sys.executable, "-m", "deita.cli", "score", str(data), "-o", str(folder / f"{name}.jsonl"),
                       "--type", args.type, "--model", str(args.model), "--on-error", "skip",
                       "--progress-interval", "0", "--shard-size", str(args.shard_size), *compile_flag]
            figures[name] = split(timed_run(command, env))
            print(json.dumps({name: figures[name]}, indent=2), flush=True)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2) + "\n")
    cold, warm = figures["cold_cache"], figures["warm_cache"]
    if "fixed_seconds" in cold and "fixed_seconds" in warm:
        print(f"\ndeita score, {cold['records']:,} records: fixed cost {cold['fixed_seconds']:.1f} s cold, "
              f"{warm['fixed_seconds']:.1f} s with the compile cache warm; steady "
              f"{cold['steady_records_per_s']:,.0f} / {warm['steady_records_per_s']:,.0f} records/s")


if __name__ == "__main__":
    main()
