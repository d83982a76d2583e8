"""Where prefill time goes on a GPU: burst vs sustained matmul peak, the model's GEMMs, kernel breakdown.

    python benchmarks/prefill_profile.py                       # random LLaMA-13B, eager and compiled engine
    python benchmarks/prefill_profile.py --variants compile --arch mistral-7b

Needs CUDA. Prints, for each engine variant, samples/s and TFLOP/s over mixed complexity/quality prompts
of real ShareGPT turns, then the GPU kernel time under torch.profiler grouped into GEMM, attention, fused
elementwise (Triton) and other, with the busiest kernels.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _prefill import (
    SHAREGPT,
    matmul_peak_tflops,
    prefill_flops,
    scoring_prompts,
    sharegpt_turns,
    sustained_rate,
    timed,
)

from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.prefill import PrefillEngine, token_logprob_head
from deita.scoring.tokens import score_token_ids
from deita.testing import random_causal_lm


def gemm_rate(m: int, k: int, n: int, seconds: float) -> dict[str, float]:
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    return sustained_rate(lambda: F.linear(x, w), 2 * m * k * n, seconds)


def category(kernel: str) -> str:
    low = kernel.lower()
    if low.startswith("triton"):
        return "fused elementwise (triton)"
    if any(s in low for s in ("flash", "fmha", "sdpa")):
        return "attention"
    if any(s in low for s in ("gemm", "nvjet", "xmma", "cutlass", "cublas")):
        return "gemm"
    return "other (eager elementwise, copies)"


def kernel_breakdown(engine: PrefillEngine, sequences, head, label: str) -> dict:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _, wall = timed(lambda: engine.run(sequences, head))
    by_kernel: collections.Counter[str] = collections.Counter()
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            by_kernel[event.name] += event.device_time
    by_category: collections.Counter[str] = collections.Counter()
    for name, microseconds in by_kernel.items():
        by_category[category(name)] += microseconds
    total = sum(by_category.values()) / 1e6
    print(f"== {label}: kernel time {total:.2f} s of {wall:.2f} s wall "
          f"(GPU busy {total / wall:.1%}, profiler on)")
    for name, microseconds in by_category.most_common():
        print(f"   {microseconds / 1e6 / total:6.1%}  {name}")
    for name, microseconds in by_kernel.most_common(12):
        print(f"   {microseconds / 1e6 / total:6.1%}  {name[:100]}")
    return {"wall_s": wall, "kernel_s": total, "categories": {k: v / 1e6 for k, v in by_category.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="llama-13b")
    parser.add_argument("--data", type=Path, default=SHAREGPT)
    parser.add_argument("--n", type=int, default=3000, help="prompts timed per variant")
    parser.add_argument("--n-profile", type=int, default=600, help="prompts run under the profiler")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    parser.add_argument("--variants", default="eager,compile",
                        help="comma-separated: eager, compile (eager always runs first: compilation is in place)")
    parser.add_argument("--peak-seconds", type=float, default=10.0)
    parser.add_argument("--tokenizer-json", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("prefill_profile.py needs a CUDA GPU (benchmarks/score.py and embed.py also run on a CPU)")

    figures: dict = {"device": torch.cuda.get_device_name()}
    figures["matmul_8192"] = matmul_peak_tflops(args.peak_seconds)
    model, tokenizer = random_causal_lm(args.arch, device="cuda", dtype=torch.bfloat16,
                                        tokenizer_json=args.tokenizer_json)
    c, m = model.config, args.batch_tokens
    figures["model_gemms"] = {
        f"{m}x{k}->{n}": gemm_rate(m, k, n, 2.0)
        for k, n in ((c.hidden_size, c.hidden_size), (c.hidden_size, c.intermediate_size),
                     (c.intermediate_size, c.hidden_size))}
    print(json.dumps(figures, indent=1))

    turns, _ = sharegpt_turns(args.data, args.n)
    prompts = scoring_prompts(tokenizer, turns[: args.n], "mixed", 2048)
    sequences = [p.token_ids for p in prompts]
    flops = prefill_flops(model, np.array([len(s) for s in sequences]))
    head = token_logprob_head(model, score_token_ids(tokenizer))
    for variant in sorted(set(args.variants.split(",")), key=["eager", "compile"].index):
        engine = PrefillEngine(model, batch_tokens=args.batch_tokens, compile=variant == "compile")
        _, warmup = timed(functools.partial(engine.run, sequences[: args.n_profile], head))
        _, seconds = timed(functools.partial(engine.run, sequences, head))
        tflops = flops / seconds / 1e12
        print(f"== {variant}: warm-up {warmup:.1f} s, {len(sequences) / seconds:.1f} samples/s, "
              f"{tflops:.0f} TFLOP/s")
        figures[variant] = {"samples_per_s": len(sequences) / seconds, "tflops": tflops,
                            "profile": kernel_breakdown(engine, sequences[: args.n_profile], head, variant)}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
