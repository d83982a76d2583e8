"""Shared by benchmarks/train.py, dpo.py, gpu_model.py and score_cli.py: random-weight models of real
architectures with a real tokenizer, the step clock, peak memory and MFU.

MFU is 6·N·tokens/s (policy forward and backward; DPO adds 2·N for the reference's forward) over a bf16 rate:
the datasheet's dense peak (989 TFLOP/s on an H100 or H200 SXM) and the sustained matmul rate measured in the
same call. N counts the parameters that do matrix work per token: all of them but the input embedding, whose
lookup does none (the LM head is untied, so it counts). Attention's L² term is left out, as 6·N does.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deita.testing import ARCHITECTURES

DATASHEET_BF16_TFLOPS = 989.0
"""Dense bf16 peak of an H100 or H200 SXM by NVIDIA's datasheet (1,979 is with 2:4 sparsity)."""
FALLBACKS = (("", {}), ("_no_liger", {"liger": False}), ("_eager", {"liger": False, "compile": False}))
"""deita's defaults, then without Liger, then without compilation too: what runs after a failure."""


def save_model(folder: Path, arch: str, tokenizer_dir: Path, device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """A randomly initialised model of a named shape (deita.testing.ARCHITECTURES), sized to the tokenizer's
    vocabulary, saved with save_pretrained (bf16 on a GPU, fp32 on a CPU) beside that tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    spec = dict(ARCHITECTURES[arch])
    kind = spec.pop("arch")
    common = dict(vocab_size=len(tokenizer), max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                  tie_word_embeddings=False, **spec)
    config = LlamaConfig(**common) if kind == "llama" else MistralConfig(sliding_window=4096, **common)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = (LlamaForCausalLM if kind == "llama" else MistralForCausalLM)(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    figures = {"arch": arch, "model_type": kind, "vocab_size": len(tokenizer), "saved_dtype": str(dtype),
               "parameters": sum(p.numel() for p in model.parameters()), "flop_parameters": flop_parameters(model),
               **{key: value for key, value in spec.items()}}
    del model
    release_memory()
    return figures


def flop_parameters(model: torch.nn.Module) -> int:
    """Parameters that do matrix work per token: all but the input embedding table."""
    embedding = model.get_input_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embedding)


def parameter_counts(model_dir: Path) -> dict[str, int]:
    """(all parameters, those doing matrix work per token) of a saved model, from its safetensors headers."""
    from safetensors import safe_open

    total = embedding = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has keys(), no iteration)
                count = 1
                for size in f.get_slice(key).get_shape():
                    count *= size
                total += count
                embedding += count if key.endswith("embed_tokens.weight") else 0
    return {"parameters": total, "flop_parameters": total - embedding}


def release_memory() -> None:
    """Free what the last run held and restart the peak-memory counter."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def load_peak(path: Path | None) -> dict[str, float] | None:
    """The matmul rates gpu_env.py measured earlier in the same call (burst and sustained TFLOP/s)."""
    if path is None or not path.exists():
        return None
    figures = json.loads(path.read_text())
    return figures.get("matmul_peak_tflops")


def mfu(flop_params: int, tokens_per_s: float, peak: dict[str, float] | None, passes: int = 6) -> dict[str, float]:
    """passes·N·tokens/s against the datasheet's dense bf16 peak and, when measured, the sustained matmul rate."""
    achieved = passes * flop_params * tokens_per_s / 1e12
    figures = {"model_tflops": achieved}
    if torch.cuda.is_available():
        figures["mfu_of_datasheet_peak"] = achieved / DATASHEET_BF16_TFLOPS
    if peak is not None:
        figures["mfu_of_sustained_matmul"] = achieved / peak["sustained"]
    return figures


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """Write what is measured so far (a run killed at its time cap still leaves the earlier runs' figures)."""
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, default=str) + "\n")


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500]


class LogClock:
    """A TrainerCallback that stamps each logged optimizer step with the clock and the trainer's running count
    of real tokens (`num_tokens`, which TRL's trainers log: attention-mask sums, or the packed row's length)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []

    def callback(self) -> Any:
        from transformers import TrainerCallback

        rows = self.rows

        class _Clock(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs) -> None:
                if logs and "num_tokens" in logs:
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    rows.append((state.global_step, time.perf_counter(), float(logs["num_tokens"])))

        return _Clock()

    def rate(self, warmup: int, last: int | None = None) -> dict[str, float]:
        """Real tokens/s from the end of step `warmup` to the end of step `last` (default: the last step):
        compilation and start-up left out, and any profiled steps after `last`."""
        timed = [row for row in self.rows if row[0] >= warmup and (last is None or row[0] <= last)]
        if len(timed) < 2:
            raise RuntimeError(f"only {len(self.rows)} logged steps: too few to time after {warmup} warm-up steps")
        (_, t0, n0), (_, t1, n1) = timed[0], timed[-1]
        return {"real_tokens_per_s": (n1 - n0) / (t1 - t0), "timed_steps": len(timed) - 1, "timed_seconds": t1 - t0}


def attempt(label: str, run: Callable[[], dict]) -> dict:
    """`run()`'s figures, or its error (kept in the figures, so the GPU check goes on)."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 (any failure of a run is a figure of the check)
        print(f"{label} failed: {error_text(err)}", flush=True)
        return {"error": error_text(err)}


def with_fallbacks(name: str, run: Callable[..., dict], liger: bool | None, compile: bool | None,
                   enabled: bool = True) -> dict[str, dict]:
    """deita's run with its defaults (`liger`, `compile` as given, None: deita's choice) and, after a failure,
    each fallback that changes what runs on this machine, until one finishes. Keyed NAME, NAME_no_liger,
    NAME_eager; a failed run holds its error."""
    from deita.training.run import liger_available, resolved_flag

    device = "cuda" if torch.cuda.is_available() else "cpu"
    results: dict[str, dict] = {}
    tried: set[tuple[bool, bool]] = set()
    for suffix, overrides in FALLBACKS if enabled else FALLBACKS[:1]:
        settings = {"liger": liger, "compile": compile, **overrides}
        effective = (resolved_flag(settings["liger"], device) and liger_available() and device == "cuda",
                     resolved_flag(settings["compile"], device))
        if effective in tried:
            continue
        tried.add(effective)
        results[name + suffix] = attempt(name + suffix, lambda settings=settings: run(**settings))
        if "error" not in results[name + suffix]:
            break
    return results


def kernel_category(name: str) -> str:
    """A GPU kernel's (or, on a CPU, an aten op's) share of the step: which part of the work it is."""
    low = name.lower()
    if any(s in low for s in ("flash", "fmha", "sdpa", "attention")):
        return "attention"
    if any(s in low for s in ("gemm", "nvjet", "xmma", "cutlass", "cublas", "aten::mm", "aten::addmm", "aten::bmm")):
        return "gemm"
    if any(s in low for s in ("adam", "multi_tensor", "foreach")):
        return "optimizer"
    if low.startswith("triton"):
        return "compiled elementwise (inductor)"
    if any(s in low for s in ("rms_norm", "swiglu", "rope", "logprob", "entropy", "cross_entropy")):
        return "liger / TRL kernels"
    if any(s in low for s in ("elementwise", "copy", "memcpy", "memset", "reduce", "vectorized", "cat")):
        return "eager elementwise, copies, reductions"
    return "other"


class KernelProfile:
    """A TrainerCallback that runs torch.profiler over `steps` optimizer steps after `after` steps, and sums
    kernel time by kind (GEMM, attention, compiled elementwise, Liger/TRL kernels, optimizer, ...): where the
    time of a step goes, read in the same run as the rates (those steps are left out of the rates)."""

    def __init__(self, after: int, steps: int) -> None:
        self.after, self.steps = after, steps
        self.figures: dict[str, Any] = {}

    def callback(self) -> Any:
        from torch.profiler import ProfilerActivity, profile
        from transformers import TrainerCallback

        owner = self
        cuda = torch.cuda.is_available()

        class _Profile(TrainerCallback):
            def __init__(self) -> None:
                self.profiler: Any = None
                self.started = 0.0

            def on_step_begin(self, args, state, control, **kwargs) -> None:
                if state.global_step == owner.after and owner.steps > 0 and self.profiler is None:
                    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                    self.profiler = profile(activities=activities)
                    self.profiler.__enter__()
                    self.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs) -> None:
                if self.profiler is not None and state.global_step == owner.after + owner.steps:
                    if cuda:
                        torch.cuda.synchronize()
                    wall = time.perf_counter() - self.started
                    self.profiler.__exit__(None, None, None)
                    owner.figures = summarise(self.profiler, wall, cuda)
                    self.profiler = None

        return _Profile()


def summarise(profiler: Any, wall: float, cuda: bool) -> dict[str, Any]:
    """Kernel seconds by category and the busiest kernels (GPU), or self CPU time by aten op (CPU)."""
    import collections

    by_name: collections.Counter[str] = collections.Counter()
    if cuda:
        for event in profiler.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                by_name[event.name] += event.device_time
    else:
        for average in profiler.key_averages():
            if average.key.startswith("aten::"):
                by_name[average.key] += average.self_cpu_time_total
    by_kind: collections.Counter[str] = collections.Counter()
    for name, microseconds in by_name.items():
        by_kind[kernel_category(name)] += microseconds
    total = sum(by_kind.values()) / 1e6

    def share(microseconds: float) -> float | None:
        return round(microseconds / 1e6 / total, 4) if total else None

    return {"wall_seconds": wall, "kernel_seconds": total, "busy_share": total / wall if wall else None,
            "by_kind": {kind: share(us) for kind, us in by_kind.most_common()},
            "top": [[name[:90], share(us)] for name, us in by_name.most_common(12)]}
