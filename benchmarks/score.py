"""Scoring speed: one prompt at a time through the model's forward pass vs deita's batched prefill engine.

    python benchmarks/score.py                      # GPU: random LLaMA-13B, bf16; CPU: tiny LLaMA
    python benchmarks/score.py --arch llama-13b --n 4000 --batch-tokens 65536

Prompts are Deita prompts of real ShareGPT turns (../shared/data), truncated to 2048 tokens: quality
prompts by default (instruction + response, mean ≈ 430 tokens). Prints samples/s, tokens/s, the ratio,
padding share and, on a GPU, achieved TFLOP/s against a measured bf16 matmul peak (burst and sustained).
Both paths' scores are compared on the shared prompts. The references run first, on the eager model:
the engine compiles the decoder layers in place.
"""

from __future__ import annotations

import numpy as np
import torch
from _prefill import (
    common_args,
    load_model,
    matmul_peak_tflops,
    report,
    scoring_prompts,
    sharegpt_turns,
    time_engine,
    timed,
)

from deita.runtime.prefill import token_logprob_head
from deita.scoring.scorer import expected_scores
from deita.scoring.tokens import score_token_ids


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], "llama-13b")
    parser.add_argument("--n-toolkit", type=int, default=50, help="prompts for the generate() reference")
    parser.add_argument("--type", choices=("quality", "complexity", "mixed"), default="quality",
                        help="which prompts (mixed: half of each)")
    args = parser.parse_args()
    peak = matmul_peak_tflops(args.peak_seconds)  # first, on a cool card: the burst figure is the boost-clock one
    model, tokenizer = load_model(args)
    turns, _ = sharegpt_turns(args.data, args.n)
    prompts = scoring_prompts(tokenizer, turns[: args.n], args.type, args.max_length)
    sequences = [p.token_ids for p in prompts]
    lengths = np.array([len(s) for s in sequences])
    digit_ids = score_token_ids(tokenizer)
    single = sequences[: args.n_single]

    @torch.inference_mode()
    def one_at_a_time():
        out = []
        for ids in single:
            logits = model(torch.tensor([ids], device=model.device)).logits[0, -1].float()
            out.append(torch.log_softmax(logits, -1)[digit_ids].cpu().numpy())
        return np.stack(out)

    one_at_a_time_fn = one_at_a_time
    one_at_a_time_fn()  # warm-up on the first prompts is part of the same path
    reference, single_seconds = timed(one_at_a_time_fn)

    toolkit = single[: args.n_toolkit]

    @torch.inference_mode()
    def toolkit_style():
        """The old toolkit: generate(max_new_tokens=2) per prompt, scores from the first step's logits."""
        for ids in toolkit:
            model.generate(torch.tensor([ids], device=model.device), max_new_tokens=2, do_sample=False,
                           output_scores=True, return_dict_in_generate=True, pad_token_id=0)

    toolkit_seconds = timed(toolkit_style)[1] if toolkit else float("nan")

    head = token_logprob_head(model, digit_ids)
    batched, engine_figures = time_engine(model, args, sequences, head, warmup=400, peak=peak)
    batched_rate = engine_figures["batched_samples_per_s"]
    single_rate = len(single) / single_seconds
    difference = np.abs(expected_scores(batched[: len(single)]) - expected_scores(reference)).max()
    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "arch": args.arch, "prompts": len(sequences), "mean_prompt_tokens": float(lengths.mean()),
        "max_prompt_tokens": int(lengths.max()), "truncated": int(sum(p.truncated for p in prompts)),
        **engine_figures,
        "one_at_a_time_samples_per_s": single_rate,
        "speedup": batched_rate / single_rate,
        "toolkit_generate_samples_per_s": len(toolkit) / toolkit_seconds,
        "speedup_vs_toolkit_generate": batched_rate / (len(toolkit) / toolkit_seconds),
        "max_score_difference_vs_reference": float(difference),
    }
    report("score", figures, args.json)


if __name__ == "__main__":
    main()
