"""SFT speed: `deita train sft` (packed rows, fused kernels, compiled layers) vs the old recipe (HF Trainer,
every conversation padded to 2,048 tokens, no packing), in one run, on real ShareGPT conversations.

    python benchmarks/train.py                 # GPU: random ~1.1B LLaMA (TinyLlama's shape), bf16
    python benchmarks/train.py --tiny          # CPU: tiny LLaMA, fp32, 256-token rows: proves the script runs

Both runs see the same conversations rendered and masked the same way (Vicuna v1.1, loss on the answers),
with the same tokens per micro-batch (--batch rows of --max-length tokens), the same attention kernel (flash
attention where installed, else sdpa), the same precision and the same gradient checkpointing setting.
For each it prints real (non-padding) tokens/s over the steps after --warmup (compilation and start-up left
out), MFU = 6 · parameters · real tokens/s over the sustained bf16 matmul peak measured at the start of the
same run, and peak GPU memory; then the ratio. The old recipe runs first, on a model that deita has not
touched (Liger patches the LLaMA module globally).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _prefill import SHAREGPT, matmul_peak_tflops

from deita.data.io import iter_records
from deita.runtime.options import RunOptions
from deita.testing import save_random_causal_lm
from deita.training.config import SFTConfig
from deita.training.packing import attention_implementation
from deita.training.render import IGNORE, bos_prefix, render_vicuna, tokenize
from deita.training.sft import run_sft


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU check: tiny LLaMA, fp32, short rows, few steps")
    parser.add_argument("--data", type=Path, default=SHAREGPT, help="ShareGPT JSON (real conversations)")
    parser.add_argument("--n", type=int, help="conversations to read (default: 3000 on a GPU, 64 with --tiny)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default: 40, 6 with --tiny)")
    parser.add_argument("--warmup", type=int, help="steps left out of the rates (default: 10, 2 with --tiny)")
    parser.add_argument("--batch", type=int, help="rows per micro-batch, both runs (default: 4, 2 with --tiny)")
    parser.add_argument("--max-length", type=int, help="tokens per row (default: 2048, 256 with --tiny)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=False,
                        help="checkpoint activations in both runs (a 1B model does not need it on an 80 GB card)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="deita's compiled decoder layers (default: as deita does, on with a GPU)")
    parser.add_argument("--liger", action=argparse.BooleanOptionalAction, default=None,
                        help="deita's Liger kernels (default: as deita does, on with a GPU where installed)")
    parser.add_argument("--peak-seconds", type=float, default=10.0, help="seconds of the matmul peak measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    tiny = args.tiny or not torch.cuda.is_available()
    defaults = {"n": 64, "steps": 6, "warmup": 2, "batch": 2, "max_length": 256} if tiny else {
        "n": 3000, "steps": 40, "warmup": 10, "batch": 4, "max_length": 2048}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.tiny = tiny
    return args


def conversations(path: Path, n: int, folder: Path) -> Path:
    """The first `n` good records of the real file, as a JSONL that `deita train sft` reads."""
    records = []
    for record in iter_records(path, on_error="skip"):
        if any(turn.response for turn in record.turns):
            records.append(record.raw)
        if len(records) >= n:
            break
    path = folder / "conversations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def old_recipe(model_dir: Path, data: Path, args: argparse.Namespace, device: str, out: Path) -> dict:
    """FastChat's recipe on HF Trainer: each conversation padded to max_length, one per row, no packing."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = {"input_ids": [], "labels": [], "attention_mask": []}
    for record in iter_records(data, on_error="skip"):
        example = tokenize(tokenizer, render_vicuna(record.turns, bos_prefix(tokenizer), tokenizer.eos_token),
                           args.max_length)
        if not example.trained_tokens:
            continue  # as deita leaves it out: no answer within max_length
        pad = args.max_length - len(example.input_ids)
        rows["input_ids"].append(example.input_ids + [tokenizer.pad_token_id] * pad)
        rows["labels"].append(example.labels + [IGNORE] * pad)
        rows["attention_mask"].append([1] * len(example.input_ids) + [0] * pad)
    dataset = Dataset.from_dict(rows)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation=attention_implementation("auto", device))

    class Clock(TrainerCallback):
        """Real tokens and seconds of each optimizer step (the collator counts, the step end times)."""

        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_step_end(self, *a, **k) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())

    real: list[int] = []

    def collate(features: list[dict]) -> dict:
        batch = {key: torch.tensor([f[key] for f in features]) for key in ("input_ids", "labels", "attention_mask")}
        real.append(int(batch["attention_mask"].sum()))
        return batch

    clock = Clock()
    training = TrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, learning_rate=2e-5, lr_scheduler_type="cosine", warmup_steps=0.1,
        bf16=device == "cuda", use_cpu=device == "cpu", save_strategy="no", report_to="none", logging_steps=1,
        disable_tqdm=True, seed=42, dataloader_num_workers=0,
        **_checkpointing(args.gradient_checkpointing))
    clock.marks.append(0.0)
    trainer = Trainer(model=model, args=training, train_dataset=dataset, data_collator=collate, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)
    _reset_memory()
    start = time.perf_counter()
    clock.marks[0] = start
    trainer.train()
    steps = clock.marks[args.warmup:]
    seconds = steps[-1] - steps[0]
    tokens = sum(real[args.warmup:len(steps) - 1 + args.warmup])
    parameters = sum(p.numel() for p in model.parameters())
    return {"real_tokens_per_s": tokens / seconds, "parameters": parameters, "peak_memory_gib": _peak_memory(),
            "conversations": len(dataset), "padding_share": 1 - sum(real) / (len(real) * args.batch * args.max_length)}


def _checkpointing(enabled: bool) -> dict:
    from deita.training.run import checkpointing_arguments

    return checkpointing_arguments(enabled)


def _reset_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def deita_sft(model_dir: Path, data: Path, args: argparse.Namespace, out: Path) -> dict:
    """`deita train sft` as the command runs it (run_sft), for --steps optimizer steps."""
    config = SFTConfig(model=str(model_dir), max_length=args.max_length, max_steps=args.steps,
                       per_device_batch=args.batch, grad_accum=1, save_steps=10**6, compile=args.compile,
                       liger=args.liger, gradient_checkpointing=args.gradient_checkpointing)
    _reset_memory()
    summary = run_sft(data, out, config, RunOptions(quiet=True))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    timed = rows[args.warmup - 1:] if args.warmup > 0 else rows
    seconds = timed[-1]["seconds"] - timed[0]["seconds"]
    tokens = timed[-1]["tokens"] - timed[0]["tokens"]
    return {"real_tokens_per_s": tokens / seconds, "peak_memory_gib": _peak_memory(), "rows": summary.rows,
            "conversations": summary.examples, "resolved": summary.resolved}


def main() -> None:
    args = arguments()
    device = "cpu" if args.tiny else "cuda"
    peak = matmul_peak_tflops(args.peak_seconds) if device == "cuda" else None  # first, on a cool card
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = save_random_causal_lm(folder / "model", "tiny-llama" if args.tiny else "llama-1b")
        data = conversations(args.data, args.n, folder)
        old = old_recipe(model_dir, data, args, device, folder / "old")
        new = deita_sft(model_dir, data, args, folder / "deita")
    figures = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "steps": args.steps,
               "warmup_steps_left_out": args.warmup, "rows_per_micro_batch": args.batch, "max_length": args.max_length,
               "tokens_per_micro_batch": args.batch * args.max_length, "gradient_checkpointing": args.gradient_checkpointing,
               "parameters": old["parameters"], "old_recipe": old, "deita_sft": new,
               "ratio_real_tokens_per_s": new["real_tokens_per_s"] / old["real_tokens_per_s"]}
    if peak is not None:
        figures["matmul_peak_tflops"] = peak
        for run in (old, new):
            run["mfu_of_sustained_peak"] = 6 * old["parameters"] * run["real_tokens_per_s"] / (peak["sustained"] * 1e12)
    print(json.dumps({"benchmark": "train", **figures}, indent=2))
    print(f"\nreal tokens/s: deita sft {new['real_tokens_per_s']:,.0f} vs old recipe {old['real_tokens_per_s']:,.0f} "
          f"= {figures['ratio_real_tokens_per_s']:.2f}× (old recipe padding {old['padding_share']:.0%})")
    if peak is not None:
        print(f"MFU (6·N·tokens/s ÷ sustained {peak['sustained']:.0f} TFLOP/s): deita {new['mfu_of_sustained_peak']:.1%}"
              f", old recipe {old['mfu_of_sustained_peak']:.1%}; peak memory {new['peak_memory_gib']:.1f} vs "
              f"{old['peak_memory_gib']:.1f} GiB")
    if args.tiny:
        print("CPU check only: TRL's fused LM head has no CPU kernel and scores the whole 32K vocabulary in torch, "
              "so the ratio says nothing about a GPU")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "train", **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
