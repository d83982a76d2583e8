"""Calibrate the offline threshold with the probe's exact and near-copy classes (`deita.probe.calibrate`).

    python benchmarks/threshold.py                     # ../shared/data/sharegpt_v3_5k.json, seeds 1,2
    python benchmarks/threshold.py --data pool.json --seeds 0 --thresholds 0.95,0.99

Plants the probe's exact and near copies (20 % of the pool, half each) with dedup off, embeds the pool once
with the static embedder (the offline preset's), and walks it at each threshold in the offline preset's length
order. Prints a Markdown table per seed: per class the share of planted copies the walk does not keep beside
their original, and the real records it skips in the pool without the copies. The preset's threshold is marked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from deita.probe.calibrate import GRID, calibrate, table_lines
from deita.select_config import PRESET_DEFAULTS

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sharegpt_v3_5k.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--thresholds", default=",".join(map(str, GRID)))
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args()
    declared = PRESET_DEFAULTS["offline"]["filter"]["threshold"]
    thresholds = sorted({float(t) for t in args.thresholds.split(",")} | {declared})
    out = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        rows = calibrate(args.data.resolve(), seed, args.rate, thresholds)
        print(f"\nseed {seed} ({time.perf_counter() - start:.0f} s); the offline preset's threshold is {declared}:")
        print("\n".join(table_lines(rows)))
        out[seed] = [row.to_json() for row in rows]
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
