"""Embedding speed: one conversation at a time (output_hidden_states, last token) vs the batched engine.

    python benchmarks/embed.py                      # GPU: random Mistral-7B, bf16; CPU: tiny Mistral
    python benchmarks/embed.py --arch mistral-7b --n 4000

Texts are Vicuna v1.1 renderings of real ShareGPT conversations, truncated to 2048 tokens. Prints
samples/s, tokens/s, the ratio, padding share and, on a GPU, achieved TFLOP/s against a measured bf16
matmul peak, and the worst cosine between both paths' embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
from _prefill import common_args, load_model, matmul_peak_tflops, prefill_flops, report, sharegpt_turns, timed

from deita.embedding.templates import render_vicuna
from deita.runtime.batching import padding_fraction, plan_batches
from deita.runtime.prefill import PrefillEngine, identity_head


def main() -> None:
    args = common_args(__doc__.splitlines()[0], "mistral-7b").parse_args()
    model, tokenizer = load_model(args)
    _, conversations = sharegpt_turns(args.data, args.n)
    texts = [render_vicuna(turns) for turns in conversations[: args.n]]
    sequences = [ids[: args.max_length] for ids in tokenizer(texts)["input_ids"]]
    lengths = np.array([len(s) for s in sequences])
    engine = PrefillEngine(model, batch_tokens=args.batch_tokens, compile=args.compile)

    engine.run(sequences[:8], identity_head)  # warm-up (and, with --compile, compilation for two shapes)
    engine.run(sequences[-8:], identity_head)
    batched, batched_seconds = timed(lambda: engine.run(sequences, identity_head))

    single = sequences[: args.n_single]

    @torch.inference_mode()
    def one_at_a_time():
        out = []
        for ids in single:
            hidden = model(torch.tensor([ids], device=model.device), output_hidden_states=True).hidden_states[-1]
            out.append(hidden[0, -1].float().cpu().numpy())
        return np.stack(out)

    one_at_a_time()
    reference, single_seconds = timed(one_at_a_time)

    cosines = (batched[: len(single)] * reference).sum(1) / (
        np.linalg.norm(batched[: len(single)], axis=1) * np.linalg.norm(reference, axis=1))
    peak = matmul_peak_tflops()
    achieved = prefill_flops(model, lengths) / batched_seconds / 1e12
    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "arch": args.arch, "conversations": len(sequences), "mean_tokens": float(lengths.mean()),
        "truncated": int(sum(len(ids) >= args.max_length for ids in sequences)),
        "batch_tokens": args.batch_tokens, "compile": args.compile,
        "padding_share": padding_fraction(lengths, plan_batches(lengths, args.batch_tokens)),
        "one_at_a_time_samples_per_s": len(single) / single_seconds,
        "batched_samples_per_s": len(sequences) / batched_seconds,
        "batched_tokens_per_s": float(lengths.sum()) / batched_seconds,
        "speedup": (len(sequences) / batched_seconds) / (len(single) / single_seconds),
        "achieved_tflops": achieved,
        "matmul_peak_tflops": peak,
        "share_of_peak": achieved / peak if peak else None,
        "min_cosine_vs_reference": float(cosines.min()),
    }
    report("embed", figures, args.json)


if __name__ == "__main__":
    main()
