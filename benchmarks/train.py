"""SFT speed: `deita train sft` (packed rows, fused kernels, compiled layers) vs the old recipe (HF Trainer,
every conversation padded to 2,048 tokens, no packing), in one run, on real ShareGPT conversations.

    python benchmarks/train.py                 # GPU: random ~1.1B LLaMA (TinyLlama's shape), bf16
    python benchmarks/train.py --tiny          # CPU: tiny LLaMA, fp32, 256-token rows: proves the script runs
    python benchmarks/train.py --model DIR --data FILE --peak-json env.json --json sft.json   # gpu_check.sh

Both runs see the same conversations rendered and masked the same way (Vicuna v1.1, loss on the answers),
with the same tokens per micro-batch (--batch rows of --max-length tokens), the same attention kernel (flash
attention where installed, else sdpa), the same precision and the same gradient checkpointing setting
(deita's default unless given: on with a GPU). deita runs with its own defaults otherwise (compiled layers,
Liger kernels where installed). For each it prints real (non-padding) tokens/s over the steps after --warmup
(compilation and start-up left out), MFU (see _training.py: 6·N·tokens/s over the datasheet's dense bf16
peak and over the sustained matmul rate measured in the same call) and peak GPU memory; then the ratio. The
old recipe runs first, on a model that deita has not touched (Liger patches the LLaMA module globally). If
deita's run fails, the error is kept and it runs again without Liger (`deita_sft_no_liger`), then without
compilation too (`deita_sft_eager`). deita's runs go on for --profile-steps more steps under torch.profiler:
GPU kernel time by kind (GEMM, attention, compiled elementwise, Liger/TRL kernels, optimizer), which says
what stands between the MFU and the matmul rate. The figures are written after each run, so a run stopped at a time
cap leaves the earlier ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _prefill import SHAREGPT, matmul_peak_tflops
from _training import (
    FALLBACKS,
    KernelProfile,
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
from deita.testing import save_random_causal_lm
from deita.training.config import SFTConfig
from deita.training.packing import attention_implementation
from deita.training.render import IGNORE, bos_prefix, render_vicuna, tokenize
from deita.training.run import resolved_flag
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
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="checkpoint activations in both runs (default: as deita does, on with a GPU)")
    parser.add_argument("--attention", default="auto", help="attention kernel of both runs, as `deita train "
                        "--attention` takes it (auto: flash attention where installed, else sdpa)")
    parser.add_argument("--model", type=Path, help="model folder to train (default: build a random one)")
    parser.add_argument("--peak-json", type=Path, help="gpu_env.py's figures: use its matmul rates instead of "
                        "measuring them again")
    parser.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                        help="if deita's run fails, run it again without Liger, then without compilation")
    parser.add_argument("--profile-steps", type=int, default=2, help="deita's steps after --steps that run "
                        "under torch.profiler (kernel time by kind; left out of the rates)")
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
    args.gradient_checkpointing = resolved_flag(args.gradient_checkpointing, "cpu" if tiny else "cuda")
    return args


def conversations(path: Path, n: int, folder: Path) -> Path:
    """The first `n` good records of the real file, as a JSONL that `deita train sft` reads."""
    records = []
    for record in iter_records(path, policy=RecordPolicy.skipping(None)):
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
    for record in iter_records(data, policy=RecordPolicy.skipping(None)):
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
                                                 attn_implementation=attention_implementation(args.attention, device))

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
    release_memory()
    start = time.perf_counter()
    clock.marks[0] = start
    trainer.train()
    steps = clock.marks[args.warmup:]
    seconds = steps[-1] - steps[0]
    tokens = sum(real[args.warmup:len(steps) - 1 + args.warmup])
    figures = {"real_tokens_per_s": tokens / seconds, "peak_memory_gib": peak_memory_gib(),
               "attention": model.config._attn_implementation, "conversations": len(dataset), "padding_share": 1 - sum(real) / (len(real) * args.batch * args.max_length)}
    del trainer, model
    release_memory()
    return figures


def _checkpointing(enabled: bool) -> dict:
    from deita.training.run import checkpointing_arguments

    return checkpointing_arguments(enabled)


def deita_sft(model_dir: Path, data: Path, args: argparse.Namespace, out: Path, liger: bool | None,
              compile: bool | None) -> dict:
    """`deita train sft` as the command runs it (run_sft), for --steps optimizer steps."""
    config = SFTConfig(model=str(model_dir), max_length=args.max_length, max_steps=args.steps + args.profile_steps,
                       per_device_batch=args.batch, grad_accum=1, save_steps=10**6, attention=args.attention,
                       gradient_checkpointing=args.gradient_checkpointing, liger=liger, compile=compile)
    profile = KernelProfile(after=args.steps, steps=args.profile_steps)
    release_memory()
    summary = run_sft(data, out, config, RunOptions(quiet=True), callbacks=[profile.callback()])
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    timed = [row for row in rows if max(args.warmup, 1) <= row["step"] <= args.steps]
    seconds = timed[-1]["seconds"] - timed[0]["seconds"]
    tokens = timed[-1]["tokens"] - timed[0]["tokens"]
    figures = {"real_tokens_per_s": tokens / seconds, "peak_memory_gib": peak_memory_gib(), "rows": summary.rows,
               "conversations": summary.examples, "resolved": summary.resolved, "first_loss": summary.first_loss,
               "last_loss": summary.last_loss, "profile": profile.figures}
    release_memory()
    return figures


RUNS = ("old_recipe", *(f"deita_sft{suffix}" for suffix, _ in FALLBACKS))


def add_mfu(figures: dict, peak: dict | None) -> None:
    for name in RUNS:
        run = figures.get(name)
        if run and "real_tokens_per_s" in run:
            run.update(mfu(figures["flop_parameters"], run["real_tokens_per_s"], peak))


def summary_lines(figures: dict) -> list[str]:
    old = figures["old_recipe"]
    lines = []
    for name in RUNS[1:]:
        new = figures.get(name, {})
        if "real_tokens_per_s" not in new or "real_tokens_per_s" not in old:
            continue
        ratio = new["real_tokens_per_s"] / old["real_tokens_per_s"]
        figures[f"ratio_real_tokens_per_s{name.removeprefix('deita_sft')}"] = ratio
        lines.append(f"real tokens/s: {name} {new['real_tokens_per_s']:,.0f} vs old recipe "
                     f"{old['real_tokens_per_s']:,.0f} = {ratio:.2f}× (old recipe padding {old['padding_share']:.0%})")
        if "mfu_of_datasheet_peak" in new:
            sustained = (f", {new['mfu_of_sustained_matmul']:.1%} of the sustained matmul rate"
                         if "mfu_of_sustained_matmul" in new else "")
            lines.append(f"MFU {name}: {new['mfu_of_datasheet_peak']:.1%} of 989 TFLOP/s{sustained} (old recipe "
                         f"{old['mfu_of_datasheet_peak']:.1%}); peak memory {new['peak_memory_gib']:.1f} vs "
                         f"{old['peak_memory_gib']:.1f} GiB")
    return lines


def main() -> None:
    args = arguments()
    device = "cpu" if args.tiny else "cuda"
    peak = load_peak(args.peak_json)
    if peak is None and device == "cuda":
        peak = matmul_peak_tflops(args.peak_seconds)  # first, on a cool card
    figures: dict = {"benchmark": "train", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "steps": args.steps, "warmup_steps_left_out": args.warmup, "rows_per_micro_batch": args.batch,
                     "max_length": args.max_length, "tokens_per_micro_batch": args.batch * args.max_length,
                     "gradient_checkpointing": args.gradient_checkpointing, "attention": args.attention,
                     "matmul_peak_tflops": peak}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_dir = args.model or save_random_causal_lm(folder / "model", "tiny-llama" if args.tiny else "llama-1b")
        data = conversations(args.data, args.n, folder)
        figures["model"] = str(args.model) if args.model else "tiny-llama" if args.tiny else "llama-1b"
        figures.update(parameter_counts(model_dir))
        figures["old_recipe"] = attempt("old recipe", lambda: old_recipe(model_dir, data, args, device, folder / "old"))
        add_mfu(figures, peak)
        write_json(args.json, figures)

        def deita(**settings) -> dict:
            return deita_sft(model_dir, data, args, Path(tempfile.mkdtemp(prefix="deita", dir=folder)), **settings)

        figures.update(with_fallbacks("deita_sft", deita, args.liger, args.compile, args.fallback))
    add_mfu(figures, peak)
    lines = summary_lines(figures)
    write_json(args.json, figures)
    print(json.dumps(figures, indent=2))
    print("\n" + "\n".join(lines))
    if args.tiny:
        print("CPU check only: TRL's fused LM head has no CPU kernel and scores the whole vocabulary in torch, "
              "so the ratio says nothing about a GPU")


if __name__ == "__main__":
    main()
