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

from deita.data.io import iter_records
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.testing import ARCHITECTURES, random_causal_lm

SHAREGPT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sharegpt_v3_5k.json"


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
    for record in iter_records(path, on_error="skip"):
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


def matmul_peak_tflops(seconds: float, n: int = 8192) -> dict[str, float] | None:
    """Measured bf16 dense matmul throughput on this GPU: the roof the prefill is compared with.

    `burst` is the first ten products after a warm-up (what a short test sees, at boost clocks); `sustained`
    is the median rate of blocks of ten over `seconds`, the regime a long prefill runs in once the card
    reaches its power cap and lowers its clocks.
    """
    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    rates = []
    start = time.perf_counter()
    while not rates or time.perf_counter() - start < seconds:
        _, block = timed(lambda: [a @ b for _ in range(10)])
        rates.append(2 * n**3 * 10 / block / 1e12)
    return {"burst": rates[0], "sustained": float(np.median(rates))}


def peak_figures(achieved: float, peak: dict[str, float] | None) -> dict[str, float | None]:
    """Achieved TFLOP/s and its share of both measured peaks."""
    if peak is None:
        return {"achieved_tflops": achieved}
    return {"achieved_tflops": achieved,
            "matmul_peak_burst_tflops": peak["burst"], "matmul_peak_sustained_tflops": peak["sustained"],
            "share_of_burst_peak": achieved / peak["burst"], "share_of_sustained_peak": achieved / peak["sustained"]}


def resolved_compile(args: argparse.Namespace) -> bool:
    return torch.cuda.is_available() if args.compile is None else args.compile


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
