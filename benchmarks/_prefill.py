"""Shared by benchmarks/score.py and benchmarks/embed.py: realistic inputs, FLOP counts, matmul peak.

Both compare the same model run one input at a time through its ordinary forward pass (the straightforward
reference) with deita's batched prefill engine, in one run, and print the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from deita.data.io import RecordPolicy, iter_records
from deita.runtime.batching import DEFAULT_BATCH_TOKENS, plan_batches
from deita.runtime.prefill import Head, PrefillEngine
from deita.scoring.prompts import Prompt, build_prompts
from deita.testing import ARCHITECTURES, random_causal_lm

SHAREGPT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sharegpt_v3_5k.json"


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of computed positions that are padding."""
    real = sum(int(lengths[b].sum()) for b in batches)
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


def common_args(description: str, default_arch: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    cuda = torch.cuda.is_available()
    parser.add_argument("--arch", default=default_arch if cuda else "tiny-" + default_arch.split("-")[0],
                        choices=sorted(ARCHITECTURES), help="random-weight architecture to build")
    parser.add_argument("--data", type=Path, default=SHAREGPT, help="ShareGPT JSON for realistic lengths")
    parser.add_argument("--n", type=int, default=2000 if cuda else 400, help="inputs for the batched engine")
    parser.add_argument("--n-single", type=int, default=150 if cuda else 100, help="inputs for the reference")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the decoder layers (default: as deita does, on for a GPU)")
    parser.add_argument("--peak-seconds", type=float, default=10.0,
                        help="seconds of the sustained matmul peak (a card at its power cap clocks down)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--tokenizer-json", type=Path, help="tokenizer.json to use where the MiniLM package is absent")
    return parser


def load_model(args: argparse.Namespace):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return random_causal_lm(args.arch, device=device, dtype=dtype, tokenizer_json=args.tokenizer_json)


def sharegpt_turns(path: Path, limit: int):
    """Turns of real ShareGPT conversations (bad records skipped), for realistic text lengths."""
    turns, conversations = [], []
    for record in iter_records(path, policy=RecordPolicy.skipping(None)):
        conversations.append(record.turns)
        turns.extend(record.turns)
        if len(turns) >= limit and len(conversations) >= limit:
            break
    return turns, conversations


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def sustained_rate(fn: Callable[[], object], flops: float, seconds: float) -> dict[str, float]:
    """TFLOP/s of `fn` in blocks of ten calls after three warm-up calls.

    `burst` is the first block (what a short test sees, at boost clocks); `sustained` is the median block over
    `seconds`, the regime a long prefill runs in once the card reaches its power cap and lowers its clocks.
    """
    for _ in range(3):
        fn()
    rates = []
    start = time.perf_counter()
    while not rates or time.perf_counter() - start < seconds:
        _, block = timed(lambda: [fn() for _ in range(10)])
        rates.append(10 * flops / block / 1e12)
    return {"burst": rates[0], "sustained": float(np.median(rates))}


def matmul_peak_tflops(seconds: float, n: int = 8192) -> dict[str, float] | None:
    """Measured bf16 dense matmul throughput on this GPU, burst and sustained: the prefill's roof."""
    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return sustained_rate(lambda: a @ b, 2 * n**3, seconds)


def peak_figures(achieved: float, peak: dict[str, float] | None) -> dict[str, float | None]:
    """Achieved TFLOP/s and its share of both measured peaks."""
    if peak is None:
        return {"achieved_tflops": achieved}
    return {"achieved_tflops": achieved,
            "matmul_peak_burst_tflops": peak["burst"], "matmul_peak_sustained_tflops": peak["sustained"],
            "share_of_burst_peak": achieved / peak["burst"], "share_of_sustained_peak": achieved / peak["sustained"]}


def scoring_prompts(tokenizer, turns: list, kind: str, max_length: int) -> list[Prompt]:
    """Deita prompts of `turns`: all quality, all complexity, or `mixed` (first half complexity)."""
    if kind != "mixed":
        return build_prompts(tokenizer, kind, turns, max_length)
    half = len(turns) // 2
    return (build_prompts(tokenizer, "complexity", turns[:half], max_length)
            + build_prompts(tokenizer, "quality", turns[half:], max_length))


def time_engine(model, args: argparse.Namespace, sequences: list[list[int]], head: Head, warmup: int,
                peak: dict[str, float] | None) -> tuple[np.ndarray, dict]:
    """Build deita's engine as `deita score/embed` would, warm it on `warmup` inputs, time it over all.

    Compilation is in place, so any eager reference must run before this. Returns the outputs and the
    engine's figures: rates, padding, warm-up and the share of the matmul peak.
    """
    compile = torch.cuda.is_available() if args.compile is None else args.compile
    engine = PrefillEngine(model, batch_tokens=args.batch_tokens, compile=compile)
    _, warmup_seconds = timed(lambda: engine.run(sequences[:warmup], head))
    outputs, seconds = timed(lambda: engine.run(sequences, head))
    lengths = np.array([len(s) for s in sequences])
    figures = {
        "batch_tokens": args.batch_tokens, "compile": compile, "warmup_seconds": warmup_seconds,
        "padding_share": padding_fraction(lengths, plan_batches(lengths, args.batch_tokens)),
        "batched_samples_per_s": len(sequences) / seconds,
        "batched_tokens_per_s": float(lengths.sum()) / seconds,
        **peak_figures(prefill_flops(model, lengths) / seconds / 1e12, peak),
    }
    return outputs, figures


def prefill_flops(model, lengths: np.ndarray) -> float:
    """Useful forward FLOPs of real tokens: 2·params per token (no LM head) + causal attention 2·L²·d per layer."""
    config = model.config
    params = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lm_head" not in name)
    lengths = lengths.astype(np.float64)
    attention = 2.0 * config.num_hidden_layers * config.hidden_size * float((lengths**2).sum())
    return 2.0 * params * float(lengths.sum()) + attention


def report(name: str, figures: dict, path: Path | None) -> None:
    print(json.dumps({"benchmark": name, **figures}, indent=2))
    if path:
        path.write_text(json.dumps({"benchmark": name, **figures}, indent=2) + "\n")
