"""What the GPU check ran on, and its ceiling: package versions, driver, GPU, the sustained bf16 matmul rate,
whether the carried wheels' requirements hold there, and whether TRL refuses a fused linear cross-entropy.

    python benchmarks/gpu_env.py --json env.json [--peak-seconds 6]

The matmul rate comes first, on a cool card: `burst` is the first ten 8192³ bf16 products, `sustained` the
median block over --peak-seconds (a card at its power cap clocks down), which the MFU figures divide by.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from _prefill import matmul_peak_tflops
from _training import error_text

PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "peft", "liger-kernel", "triton",
            "tokenizers", "huggingface-hub", "numpy", "pyarrow", "sentence-transformers", "fastapi", "uvicorn")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def driver() -> dict[str, Any]:
    """nvidia-smi's view (driver, power limit, clocks) and torch's (name, capability, CUDA runtime)."""
    figures: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if not torch.cuda.is_available():
        return figures
    properties = torch.cuda.get_device_properties(0)
    figures.update(gpu=properties.name, capability=f"{properties.major}.{properties.minor}",
                   multiprocessors=properties.multi_processor_count, memory_gib=properties.total_memory / 2**30)
    query = "name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.sm,temperature.gpu"
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip().splitlines()[0]
        figures["nvidia_smi"] = dict(zip(query.split(","), (v.strip() for v in line.split(",")), strict=True))
        figures["driver"] = figures["nvidia_smi"]["driver_version"]
    except (OSError, subprocess.SubprocessError, IndexError, ValueError) as err:
        figures["nvidia_smi_error"] = error_text(err)
    return figures


def unmet_requirements(folder: Path) -> list[str]:
    """Requirements of the packages installed in `folder` (the carried wheels) that this Python does not meet."""
    from packaging.requirements import Requirement

    unmet = []
    for dist in importlib.metadata.distributions(path=[str(folder)]):
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                installed = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                unmet.append(f"{dist.metadata['Name']}: {text} (missing)")
                continue
            if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
                unmet.append(f"{dist.metadata['Name']}: {text} (found {installed})")
    return sorted(set(unmet))


def fused_cross_entropy(tokenizer_dir: Path) -> dict[str, str]:
    """Ask TRL's SFTTrainer for Liger's fused linear cross-entropy on a tiny model (on the CPU: the answer is
    TRL's, before any kernel runs) and record what it says."""
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, use_liger_kernel=True, liger_kernel_config={"fused_linear_cross_entropy": True},
                         max_steps=1, report_to="none", use_cpu=True)
        try:
            SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": [[1, 2, 3]]}),
                       processing_class=tokenizer)
        except Exception as err:  # noqa: BLE001 (the refusal, whatever its type, is the answer)
            return {"liger_fused_linear_cross_entropy": "refused", "message": error_text(err)}
    return {"liger_fused_linear_cross_entropy": "accepted"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--peak-seconds", type=float, default=6.0, help="seconds of the sustained matmul loop")
    parser.add_argument("--site", type=Path, help="folder the carried wheels were installed into")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder for the fused cross-entropy question")
    args = parser.parse_args()
    figures: dict[str, Any] = {"matmul_peak_tflops": matmul_peak_tflops(args.peak_seconds)}
    figures.update(versions=versions(), device=driver(), argv=sys.argv[1:])
    if args.site is not None and args.site.is_dir():
        figures["unmet_requirements_of_carried_wheels"] = unmet_requirements(args.site)
    if args.tokenizer is not None:
        try:
            figures["trl_fused_cross_entropy"] = {"trl": figures["versions"]["trl"], **fused_cross_entropy(args.tokenizer)}
        except Exception as err:  # noqa: BLE001 (a broken TRL must not hide the rest of the environment)
            figures["trl_fused_cross_entropy"] = {"error": error_text(err)}
    print(json.dumps({"benchmark": "env", **figures}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
