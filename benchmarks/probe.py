"""`deita probe` on the real pool for every strategy the offline preset can run, and the offline select's time.

    python benchmarks/probe.py                                  # ../shared/data/sharegpt_v3_5k.json, seeds 1,2
    python benchmarks/probe.py --data pool.json --seeds 0,1,2 --out /tmp/probe-bench
    python benchmarks/probe.py --strategies deita,ifd --limit 1000 --skip-timing   # IFD on a 1,000-record slice
    python benchmarks/probe.py --strategies ifd --ifd-model SmolLM2.gguf --limit 200 --skip-timing

1. The probe (20 % of the pool injected, a selection of 20 % of the probe's pool) for the offline preset with
   each strategy: deita (the preset: length × the offline signals' gate, diversity walk at 0.99), score (the
   same ranking, no diversity), length, kcenter, ifd (`select`'s IFD pass, offline preset otherwise: by default
   a tiny random 2-layer LLaMA saved with save_pretrained beside the packaged MiniLM tokenizer, so it runs
   offline on a CPU; its IFD is a mechanism check, not a quality signal; `--ifd-model` for a real causal LM);
   and the random strategy beside each, in the same run. Prints a Markdown table of the mean ratio per class
   (share in selection / share in pool) and the spread.
2. The offline select's time on the pool against the length-only pipeline it replaced (dedup → length scores
   → static embeddings → filter at 0.99, ranked by instruction × response length), both run here in the same
   process order, with the report off; target ≤ 2×.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deita.dedup.config import DedupConfig
from deita.dedup.run import dedup_file
from deita.embedding.embedder import EmbedConfig
from deita.embedding.run import embed_file
from deita.probe.run import ALL, ProbeSettings, run_probe
from deita.runtime.options import RunOptions
from deita.scoring.lengths import add_length_scores
from deita.select_config import PRESET_DEFAULTS, SelectConfig
from deita.selection.config import FilterConfig
from deita.selection.run import filter_file
from deita.workflow import run_select

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sharegpt_v3_5k.json"
STRATEGIES = ("deita", "score", "length", "kcenter", "ifd")


@dataclass(frozen=True)
class IFDModel:
    """The causal LM the `ifd` column scores with, and the context it is given."""

    model: str
    max_length: int


def tiny_ifd_model(folder: Path) -> str:
    """A tiny random LLaMA (2 layers, hidden 64, seed 0) and the packaged MiniLM tokenizer, saved with
    save_pretrained: what `deita select --ifd-model` loads, with nothing downloaded."""
    from deita.testing import save_random_causal_lm

    return str(save_random_causal_lm(folder, "tiny-llama"))


def section(strategy: str, ifd: IFDModel | None) -> dict:
    """The probed config: the offline preset with `strategy`; for ifd, the ifd section scoring on the CPU."""
    data: dict = {"preset": "offline", "filter": {"strategy": strategy}, "run": {"on_error": "skip"}}
    if strategy == "ifd":
        assert ifd is not None
        data["ifd"] = {"model": ifd.model, "max_length": ifd.max_length, "device": "cpu"}
    return data


def probe_table(data: Path, out: Path, seeds: tuple[int, ...], strategies: tuple[str, ...] = STRATEGIES,
                ifd: IFDModel | None = None) -> list[str]:
    results = {}
    for strategy in strategies:
        config = SelectConfig.build(section(strategy, ifd))
        start = time.perf_counter()
        results[strategy] = run_probe(data, out / f"{strategy}.json", config, ProbeSettings(seeds=seeds))
        print(f"probed offline/{strategy} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    first = results[strategies[0]]
    classes = [*first["classes"], ALL]

    def cell(summary: dict) -> str:
        if summary["mean"] is None:
            return "–"
        spread = f" ({summary['min']:.2f}–{summary['max']:.2f})" if len(seeds) > 1 else ""
        return f"{summary['mean']:.2f}{spread}"

    run = first["runs"][0]
    lines = [f"pool {data.name}: {run['original_records']:,} records + {sum(run['pool_counts'].values()):,} injected "
             f"(seeds {', '.join(map(str, seeds))}), {run['size']:,} selected", "",
             "| class | " + " | ".join(f"offline/{s}" for s in strategies) + " | random |",
             "|---|" + "---:|" * (len(strategies) + 1)]
    for name in classes:
        cells = [cell(results[s]["summary"][name]["selector"]) for s in strategies]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cell(first['summary'][name]['random'])} |")
    return lines


def length_only(data: Path, folder: Path, size: int) -> float:
    """The offline select as it was before the signals, stage by stage; seconds."""
    start = time.perf_counter()
    options = RunOptions(quiet=True, on_error="skip", cache_dir=str(folder / "cache"))
    dedup_file(data, folder / "d.jsonl", DedupConfig(), options)  # bad records set aside beside d.jsonl
    clean = dataclasses.replace(options, on_error="fail")
    add_length_scores(folder / "d.jsonl", folder / "l.jsonl", clean)
    embed_file(folder / "l.jsonl", folder / "e.npy", EmbedConfig(kind="static"), clean)
    filter_file(folder / "l.jsonl", folder / "sel.jsonl",
                FilterConfig(size=size, threshold=PRESET_DEFAULTS["offline"]["filter"]["threshold"],
                             sort_key=("instruction_lengths", "response_lengths")), folder / "e.npy")
    return time.perf_counter() - start


def with_signals(data: Path, folder: Path, size: int) -> float:
    config = SelectConfig.build({"preset": "offline", "filter": {"size": size}, "report": {"write": False},
                                 "run": {"on_error": "skip", "quiet": True}})
    start = time.perf_counter()
    run_select(data, folder / "sel.jsonl", config)
    return time.perf_counter() - start


def timing(data: Path, out: Path, size: int = 1000, repeats: int = 2) -> list[str]:
    reference, signals = [], []
    for repeat in range(repeats):  # alternated, fresh folders: no stage resumes from a cache
        for runs, run in ((reference, length_only), (signals, with_signals)):
            folder = out / f"time-{run.__name__}-{repeat}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            runs.append(run(data, folder, size))
    best_reference, best_signals = min(reference), min(signals)
    return [f"offline select of {size:,} from {data.name} (report off, best of {repeats}): length-only pipeline "
            f"{best_reference:.1f} s, with the signals {best_signals:.1f} s: {best_signals / best_reference:.2f}× "
            "(target ≤ 2×)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", default="1,2", help="Probe seeds (seed 0 was used to set the signals' gates).")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="Probe the pool's first N records only.")
    parser.add_argument("--ifd-model", default=None, help="The ifd column's causal LM (default: a tiny random "
                        "LLaMA with the packaged MiniLM tokenizer, saved under --out).")
    parser.add_argument("--ifd-max-length", type=int, default=512, help="The ifd scorer's context in tokens.")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="deita-probe-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if args.limit is not None:
        data = out / f"{args.data.stem}-first{args.limit}.json"
        data.write_text(json.dumps(json.loads(args.data.read_text())[: args.limit]))
    strategies = tuple(args.strategies.split(","))
    ifd = None
    if "ifd" in strategies:
        ifd = IFDModel(args.ifd_model or tiny_ifd_model(out / "tiny-llama"), args.ifd_max_length)
    lines = [] if args.skip_timing else timing(data, out)
    lines += probe_table(data, out, tuple(int(s) for s in args.seeds.split(",")), strategies, ifd)
    if ifd is not None:
        lines.append(f"ifd: {ifd.model}, max_length {ifd.max_length}, on the CPU")
    print("\n".join(lines))
    (out / "summary.json").write_text(json.dumps({"lines": lines}, indent=2) + "\n")


if __name__ == "__main__":
    main()
