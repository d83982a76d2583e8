"""Embedding speed: one conversation at a time (output_hidden_states, last token) vs the batched engine.

    python benchmarks/embed.py                      # GPU: random Mistral-7B, bf16; CPU: tiny Mistral
    python benchmarks/embed.py --arch mistral-7b --n 4000

Texts are Vicuna v1.1 renderings of real ShareGPT conversations, truncated to 2048 tokens. Prints
samples/s, tokens/s, the ratio, padding share and, on a GPU, achieved TFLOP/s against a measured bf16
matmul peak (burst and sustained), and the worst cosine between both paths' embeddings. The reference runs
first, on the eager model: the engine compiles the decoder layers in place.
"""

from __future__ import annotations

import numpy as np
import torch
from _prefill import common_args, load_model, matmul_peak_tflops, report, sharegpt_turns, time_engine, timed

from deita.embedding.templates import render_vicuna
from deita.runtime.prefill import identity_head


def main() -> None:
    args = common_args(__doc__.splitlines()[0], "mistral-7b").parse_args()
    peak = matmul_peak_tflops(args.peak_seconds)  # first, on a cool card: the burst figure is the boost-clock one
    model, tokenizer = load_model(args)
    _, conversations = sharegpt_turns(args.data, args.n)
    texts = [render_vicuna(turns) for turns in conversations[: args.n]]
    sequences = [ids[: args.max_length] for ids in tokenizer(texts)["input_ids"]]
    lengths = np.array([len(s) for s in sequences])
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

    batched, engine_figures = time_engine(model, args, sequences, identity_head, warmup=200, peak=peak)

    cosines = (batched[: len(single)] * reference).sum(1) / (
        np.linalg.norm(batched[: len(single)], axis=1) * np.linalg.norm(reference, axis=1))
    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "arch": args.arch, "conversations": len(sequences), "mean_tokens": float(lengths.mean()),
        "truncated": int(sum(len(ids) >= args.max_length for ids in sequences)),
        **engine_figures,
        "one_at_a_time_samples_per_s": len(single) / single_seconds,
        "speedup": engine_figures["batched_samples_per_s"] / (len(single) / single_seconds),
        "min_cosine_vs_reference": float(cosines.min()),
    }
    report("embed", figures, args.json)


if __name__ == "__main__":
    main()
