"""DPO speed: `deita train dpo` vs TRL's DPOTrainer with its defaults, on the same pairs, in one run.

    python benchmarks/dpo.py                 # GPU: random ~1.1B LLaMA (TinyLlama's shape), 2K real pairs
    python benchmarks/dpo.py --tiny          # CPU: tiny LLaMA, short sequences: proves the script runs
    python benchmarks/dpo.py --model DIR --data FILE --peak-json env.json --json dpo.json   # gpu_check.sh

The pairs come from real ShareGPT records: the prompt is a record's first question, `chosen` its answer and
`rejected` the first answer of the record --offset places further on (an answer to another question).
Both trainers get the same texts, deita's rendering of each pair (Vicuna v1.1, prompts cut to 512 tokens),
and the same micro-batch (--batch pairs, no accumulation) and --max-length:
- TRL: `DPOTrainer(model=PATH, args=DPOConfig(...))` with DPOConfig's defaults otherwise: an fp32 policy and
  an fp32 reference loaded by TRL, bf16 autocast, gradient checkpointing on, no compilation, no Liger.
- deita: `run_dpo`, what `deita train dpo` runs, with its defaults: fp32 master weights, the frozen reference
  in bf16, compiled decoder layers, Liger where installed, gradient checkpointing on a GPU.
It prints real tokens/s (prompt and both answers, no padding, the trainers' own `num_tokens`) over the
steps after --warmup, MFU with 8·N per token (the policy's forward and backward, the reference's forward),
and peak GPU memory. TRL's run goes first, on a model that Liger has not patched. If deita's run fails, the
error is kept and it runs again without Liger, then without compilation too, as train.py does; deita's runs
go on for --profile-steps more steps under torch.profiler (kernel time by kind).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from _prefill import SHAREGPT
from _training import (
    FALLBACKS,
    KernelProfile,
    LogClock,
    attempt,
    load_peak,
    mfu,
    parameter_counts,
    peak_memory_gib,
    release_memory,
    with_fallbacks,
    write_json,
)

from deita.data.io import RecordPolicy, iter_records
from deita.runtime.options import RunOptions
from deita.training.config import DPOConfig
from deita.training.dpo import dpo_texts, run_dpo
from deita.training.run import resolved_flag

PASSES = 8
"""Matmul passes per token: policy forward (2) and backward (4), the reference's forward (2)."""


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU check: tiny model, short sequences, few steps")
    parser.add_argument("--model", type=Path, required=True, help="model folder (gpu_model.py builds one)")
    parser.add_argument("--data", type=Path, default=SHAREGPT, help="ShareGPT JSON (real conversations)")
    parser.add_argument("--pairs", type=int, help="pairs to build (default: 2000 on a GPU, 64 with --tiny)")
    parser.add_argument("--offset", type=int, default=7, help="rejected answer: this many records further on")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: 16, 4 with --tiny)")
    parser.add_argument("--warmup", type=int, help="steps left out of the rates (default: 6, 1 with --tiny)")
    parser.add_argument("--batch", type=int, help="pairs per micro-batch, both runs (default: 8, deita's; 2 --tiny)")
    parser.add_argument("--max-length", type=int, help="tokens per sequence (default: 2048, deita's; 256 --tiny)")
    parser.add_argument("--max-prompt-length", type=int, help="deita's prompt cut (default: 512; 64 with --tiny)")
    parser.add_argument("--peak-json", type=Path, help="gpu_env.py's figures (the sustained matmul rate)")
    parser.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                        help="if deita's run fails, run it again without Liger, then without compilation")
    parser.add_argument("--profile-steps", type=int, default=2, help="deita's steps after --steps that run "
                        "under torch.profiler (kernel time by kind; left out of the rates)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.tiny = args.tiny or not torch.cuda.is_available()
    defaults = {"pairs": 64, "steps": 4, "warmup": 1, "batch": 2, "max_length": 256, "max_prompt_length": 64} \
        if args.tiny else {"pairs": 2000, "steps": 16, "warmup": 6, "batch": 8, "max_length": 2048,
                           "max_prompt_length": 512}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def make_pairs(path: Path, n: int, offset: int, target: Path) -> int:
    """Pairs (prompt, chosen, rejected) from the first answered turn of each good record of `path`."""
    firsts = []
    for record in iter_records(path, policy=RecordPolicy.skipping(None)):
        turn = next((t for t in record.turns if t.instruction.strip() and t.response.strip()), None)
        if turn is not None:
            firsts.append(turn)
        if len(firsts) >= n:
            break
    rows = []
    for i, turn in enumerate(firsts):
        others = (firsts[(i + offset + k) % len(firsts)].response for k in range(len(firsts)))
        rejected = next(r for r in others if r.strip() != turn.response.strip())
        rows.append({"prompt": turn.instruction, "chosen": turn.response, "rejected": rejected})
    target.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def config_of(args: argparse.Namespace, steps: int, **overrides) -> DPOConfig:
    return DPOConfig(model=str(args.model), max_length=args.max_length, max_prompt_length=args.max_prompt_length,
                     max_steps=steps, per_device_batch=args.batch, grad_accum=1, save_steps=10**6, **overrides)


def trl_defaults(pairs: Path, args: argparse.Namespace, out: Path) -> dict:
    """TRL's DPOTrainer as its docs show it, on deita's texts of the same pairs."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    texts, *_ = dpo_texts(pairs, tokenizer, config_of(args, args.steps), RunOptions(), None, out / "rejects.jsonl")
    cuda = torch.cuda.is_available()
    config = TRLDPOConfig(output_dir=str(out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                          max_steps=args.steps, max_length=args.max_length, logging_steps=1, save_strategy="no",
                          report_to="none", disable_tqdm=True, use_cpu=not cuda, bf16=cuda)
    clock = LogClock()
    release_memory()
    trainer = DPOTrainer(model=str(args.model), args=config, train_dataset=Dataset.from_dict(texts),
                         processing_class=tokenizer, callbacks=[clock.callback()])
    trainer.remove_callback(PrinterCallback)  # a dict per step; the figures come from the clock
    settings = {"policy_dtype": str(trainer.model.dtype), "gradient_checkpointing": config.gradient_checkpointing,
                "bf16": config.bf16, "reference_dtype": str(trainer.ref_model.dtype) if trainer.ref_model else None}
    trainer.train()
    figures = {**clock.rate(args.warmup), "peak_memory_gib": peak_memory_gib(), "pairs": len(texts["prompt"]),
               "settings": settings}
    del trainer
    release_memory()
    return figures


def deita_dpo(pairs: Path, args: argparse.Namespace, out: Path, liger: bool | None, compile: bool | None) -> dict:
    """`deita train dpo` as the command runs it (run_dpo)."""
    clock, profile = LogClock(), KernelProfile(after=args.steps, steps=args.profile_steps)
    release_memory()
    config = config_of(args, args.steps + args.profile_steps, liger=liger, compile=compile)
    summary = run_dpo(pairs, out, config, RunOptions(quiet=True), callbacks=[clock.callback(), profile.callback()])
    figures = {**clock.rate(args.warmup, last=args.steps), "peak_memory_gib": peak_memory_gib(),
               "pairs": summary.examples, "prompts_cut": summary.truncated, "resolved": summary.resolved,
               "last_margin": summary.last_margin, "profile": profile.figures}
    release_memory()
    return figures


def main() -> None:
    args = arguments()
    peak = load_peak(args.peak_json)
    figures: dict = {"benchmark": "dpo", "device": torch.cuda.get_device_name() if not args.tiny else "cpu",
                     "model": str(args.model), "steps": args.steps, "warmup_steps_left_out": args.warmup,
                     "pairs_per_micro_batch": args.batch, "max_length": args.max_length,
                     "max_prompt_length": args.max_prompt_length, "matmul_peak_tflops": peak,
                     "deita_gradient_checkpointing": resolved_flag(None, "cpu" if args.tiny else "cuda")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs = folder / "pairs.jsonl"
        figures["pairs"] = make_pairs(args.data, args.pairs, args.offset, pairs)
        figures.update(parameter_counts(args.model))
        figures["trl_defaults"] = trl = attempt("TRL DPOTrainer", lambda: trl_defaults(pairs, args, folder / "trl"))
        if "real_tokens_per_s" in trl:
            trl.update(mfu(figures["flop_parameters"], trl["real_tokens_per_s"], peak, PASSES))
        write_json(args.json, figures)

        def deita(**settings) -> dict:
            return deita_dpo(pairs, args, Path(tempfile.mkdtemp(prefix="deita", dir=folder)), **settings)

        figures.update(with_fallbacks("deita_dpo", deita, None, None, args.fallback))
    lines = []
    for name in (f"deita_dpo{suffix}" for suffix, _ in FALLBACKS):
        run = figures.get(name, {})
        if "real_tokens_per_s" in run:
            run.update(mfu(figures["flop_parameters"], run["real_tokens_per_s"], peak, PASSES))
        if "real_tokens_per_s" in run and "real_tokens_per_s" in trl:
            ratio = figures[f"ratio_real_tokens_per_s{name.removeprefix('deita_dpo')}"] = (
                run["real_tokens_per_s"] / trl["real_tokens_per_s"])
            memory = (f"; peak memory {run['peak_memory_gib']:.1f} vs {trl['peak_memory_gib']:.1f} GiB"
                      if run["peak_memory_gib"] is not None else "")
            lines.append(f"real tokens/s: {name} {run['real_tokens_per_s']:,.0f} vs TRL defaults "
                         f"{trl['real_tokens_per_s']:,.0f} = {ratio:.2f}×{memory}")
    write_json(args.json, figures)
    print(json.dumps(figures, indent=2))
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
