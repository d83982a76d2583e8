"""Scaling of `deita score` on Ray: the same input scored with 1 and then 2 Ray workers on one machine.

    python benchmarks/scale.py                                  # tiny random LLaMA, synthetic ShareGPT
    python benchmarks/scale.py --model hkust-nlp/deita-complexity-scorer --records 20000 --device cuda
    python benchmarks/scale.py --input data.jsonl --workers 1,2,4,8 --ray-address auto

Each run starts from an empty cache (nothing resumed) and includes starting the actors and loading the
model, as a user's run does. With GPUs every worker gets its own GPU, so 2 workers need 2 GPUs; without
GPUs the machine's cores are split between the workers, so on CPU the ratio mostly shows the overhead of
going through Ray rather than a speed-up. Prints turns/s for each worker count, the ratio to 1 worker,
and checks that every run wrote the same scores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np

from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.options import RunOptions
from deita.scoring.run import score_file
from deita.scoring.scorer import ScoreConfig
from deita.testing import ARCHITECTURES, save_random_causal_lm

WORDS = ("the", "a", "data", "model", "learn", "quick", "brown", "fox", "sea", "poem", "code", "python",
         "list", "sort", "explain", "why", "how", "write", "story", "about", "small", "large",
         "function", "error", "fix", "test", "compare", "summarise", "translate", "question", "answer")


def synthetic_sharegpt(path: Path, records: int, seed: int = 0) -> Path:
    """ShareGPT records of 1-3 turns, instructions of 5-120 words and responses of 10-400 words."""
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(records):
            conversations = []
            for _ in range(rng.randint(1, 3)):
                conversations += [
                    {"from": "human", "value": " ".join(rng.choices(WORDS, k=rng.randint(5, 120)))},
                    {"from": "gpt", "value": " ".join(rng.choices(WORDS, k=rng.randint(10, 400)))},
                ]
            out.write(json.dumps({"id": f"synthetic-{i}", "conversations": conversations}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="ShareGPT JSONL to score (default: synthetic records)")
    parser.add_argument("--records", type=int, default=2000, help="synthetic records to generate")
    parser.add_argument("--model", help="scorer model (hub id or directory); default: a random --arch model")
    parser.add_argument("--arch", default="tiny-llama", choices=sorted(ARCHITECTURES),
                        help="random-weight architecture used when --model is not given")
    parser.add_argument("--type", default="quality", choices=("complexity", "quality"))
    parser.add_argument("--device", default="auto", help="device inside each worker (auto: its GPU, else CPU)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    parser.add_argument("--shard-size", type=int, default=64, help="records per shard (unit of work)")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    parser.add_argument("--ray-address", help="join this Ray cluster ('auto': a running one); default: start one")
    args = parser.parse_args()

    import ray

    with tempfile.TemporaryDirectory(prefix="deita-scale-") as tmp:
        tmp = Path(tmp)
        model = args.model or str(save_random_causal_lm(tmp / args.arch, args.arch))
        data = args.input or synthetic_sharegpt(tmp / "input.jsonl", args.records)
        ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        print(f"cluster: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; "
              f"model {model if args.model else args.arch + ' (random)'}; input {data}")
        config = ScoreConfig(type=args.type, model=model, device=args.device, batch_tokens=args.batch_tokens)
        rates: dict[int, float] = {}
        reference = None
        for workers in [int(w) for w in args.workers.split(",")]:
            output = tmp / f"scored-{workers}.jsonl"
            options = RunOptions(executor="ray", num_workers=workers, shard_size=args.shard_size, quiet=True,
                                 cache_dir=str(tmp / f"cache-{workers}"))
            summary = score_file(data, output, config, options).summary
            rates[workers] = summary.requests / summary.seconds
            print(f"{workers} worker{'s' if workers > 1 else ' '}: {summary.requests:,} turns of {summary.records:,} "
                  f"records in {summary.seconds:,.1f} s = {rates[workers]:,.1f} turns/s")
            field = f"{args.type}_scores"
            scores = np.array([s for line in output.read_text().splitlines() for s in json.loads(line)[field]])
            if reference is None:
                reference = scores
            elif not np.allclose(scores, reference, rtol=0, atol=1e-5):
                print(f"  WARNING: scores differ from the first run by up to {np.abs(scores - reference).max():.2e}")
        base = min(rates)
        for workers, rate in rates.items():
            if workers != base:
                print(f"ratio {workers} vs {base} worker{'s' if base > 1 else ''}: {rate / rates[base]:.2f}x")
        ray.shutdown()
    print(f"(machine: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
