"""Training configs: every flag of `deita train sft/dpo` and every key of their YAML, declared once.

The defaults are the paper's recipe (DEITA.md §5). Options named `auto` (or left unset) resolve on the
machine that runs: bf16, gradient checkpointing, compilation and Liger kernels on a GPU; fp32 and none of
them on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deita.config import SEED_RANGE, Config, check_keys, config_to_dict, option
from deita.config_layers import Layer
from deita.config_yaml import read_yaml
from deita.errors import ConfigError, quote
from deita.runtime.options import RunOptions

TEMPLATES = ("vicuna", "model")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ATTENTIONS = ("auto", "flash_attention_2", "flex_attention", "sdpa", "eager")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_min_lr")
READ_OPTIONS = ("format", "pairing", "on_error", "quiet", "progress_interval")
"""The RunOptions a training command takes (flags, and keys of the YAML's `run:` section)."""


@dataclass(frozen=True)
class TrainConfig(Config):
    """What SFT and DPO share. Global batch = per_device_batch × grad_accum × processes."""

    model: str | None = option(None, "Model folder (or hub id) to start from. Required.")
    template: str = option("vicuna", "vicuna: Vicuna v1.1 as in the paper (and the embedder); model: the "
                           "model's own chat template.", choices=TEMPLATES)
    max_length: int = option(2048, "Tokens per training sequence; longer conversations are cut at the end.",
                             min=16)
    epochs: float = option(6.0, "Passes over the data.", min=0.0, max=1e6)
    max_steps: int = option(-1, "Stop after this many optimizer steps (-1: run all epochs).", min=1, allow=(-1,))
    learning_rate: float = option(2e-5, "Peak learning rate (AdamW).", min=0.0)
    scheduler: str = option("cosine", "Learning-rate schedule after warm-up.", choices=SCHEDULERS)
    warmup_ratio: float = option(0.1, "Share of the steps spent warming the learning rate up.", min=0.0, max=0.99)
    weight_decay: float = option(0.0, "AdamW weight decay.", min=0.0)
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0: none).", min=0.0)
    per_device_batch: int = option(4, "Sequences per device per micro-batch (with --packing: packed rows of "
                                   "up to --max-length tokens).", min=1)
    grad_accum: int = option(16, "Micro-batches accumulated per optimizer step.", min=1)
    precision: str = option("auto", "auto (bf16 on a GPU, fp32 on a CPU), bf16, fp16 or fp32.", choices=PRECISIONS)
    attention: str = option("auto", "Attention kernel; auto: flash_attention_2 where installed, else sdpa with "
                            "a block-diagonal mask for packed rows.", choices=ATTENTIONS)
    gradient_checkpointing: bool | None = option(None, "Recompute activations in the backward pass to save "
                                                 "memory (default: on with a GPU).")
    compile: bool | None = option(None, "torch.compile each decoder layer (default: on with a GPU).")
    liger: bool | None = option(None, "Liger kernels (RMSNorm, SwiGLU, RoPE) where liger-kernel is installed "
                                "(default: on with a GPU). The LM head is always fused (TRL's chunked loss).")
    lora: bool = option(False, "Train LoRA adapters (peft) instead of all weights, e.g. a 7B–13B model on one "
                        "GPU; the output folder then holds the adapter.")
    lora_r: int = option(16, "LoRA rank.", min=1)
    lora_alpha: int = option(32, "LoRA alpha.", min=1)
    lora_dropout: float = option(0.05, "LoRA dropout.", min=0.0, max=1.0)
    lora_targets: str = option("all-linear", "Modules that get adapters: all-linear or comma-separated names.")
    qlora: bool = option(False, "Load the base model in 4 bits (bitsandbytes, CUDA) under the LoRA adapters.")
    deepspeed: str | None = option(None, "DeepSpeed config: zero2, zero3 (shipped with deita) or a JSON path. "
                                   "Launch with `accelerate launch` or `torchrun` for several GPUs.")
    seed: int = option(42, "Seed for initialisation and data order.", min=SEED_RANGE[0], max=SEED_RANGE[1])
    save_steps: int = option(200, "Save a checkpoint every N optimizer steps (what a rerun resumes from).", min=1)
    save_total_limit: int = option(1, "Checkpoints kept in OUTDIR while training.", min=1)
    logging_steps: int = option(1, "Optimizer steps between train_log.jsonl rows.", min=1)
    resume: bool = option(True, "Continue from the newest checkpoint in OUTDIR when it holds this same run; "
                          "--no-resume starts over (removing those checkpoints).")

    def check(self) -> None:
        if self.qlora and not self.lora:
            raise ConfigError("qlora trains LoRA adapters on a 4-bit base: turn on lora too", ["qlora", "lora"],
                              rule=True)

    def check_ready(self) -> None:
        """What a run needs beyond a valid config: the model to start from (no default can stand in)."""
        if not self.model:
            raise ConfigError("model is required: a folder or hub id to start from", ["model"], rule=True)

    def global_batch(self, processes: int) -> int:
        return self.per_device_batch * self.grad_accum * processes


@dataclass(frozen=True)
class SFTConfig(TrainConfig):
    """`deita train sft`: loss on the assistant tokens (and each answer's eos) only."""

    packing: bool = option(True, "Pack several conversations into each row (best-fit), each with its own "
                           "position ids; attention never crosses conversations.")


@dataclass(frozen=True)
class DPOConfig(TrainConfig):
    """`deita train dpo`: TRL's DPOTrainer; the reference model is a frozen copy of --model."""

    epochs: float = option(1.0, "Passes over the pairs.", min=0.0, max=1e6)
    learning_rate: float = option(5e-7, "Peak learning rate (AdamW).", min=0.0)
    scheduler: str = option("linear", "Learning-rate schedule after warm-up.", choices=SCHEDULERS)
    per_device_batch: int = option(8, "Pairs per device per micro-batch.", min=1)
    grad_accum: int = option(2, "Micro-batches accumulated per optimizer step.", min=1)
    beta: float = option(0.1, "DPO β: how far the policy may move from the reference.", min=0.0)
    max_prompt_length: int = option(512, "Prompt tokens kept: older turns go first, then the start of the "
                                    "last question.", min=8)

    def check(self) -> None:
        super().check()
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(f"max_prompt_length ({self.max_prompt_length}) leaves no room for the answer within "
                              f"max_length ({self.max_length})", ["max_prompt_length", "max_length"], rule=True)


def read_options(options: RunOptions) -> dict[str, Any]:
    """The RunOptions a training run uses, for its saved config."""
    return {name: getattr(options, name) for name in READ_OPTIONS}


def config_layers(path: str | Path) -> tuple[Layer, Layer]:
    """The layers of a training YAML file: the config's keys at the top, the RunOptions keys under `run:`.

    The file `deita train` saves as OUTDIR/train_config.yaml has this shape, so it can be given back.
    """
    data = read_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of options, got {quote(data)}", where=str(path))
    data = dict(data or {})
    run = data.pop("run", None) or {}
    if not isinstance(run, Mapping):
        raise ConfigError(f"expected a mapping of options, got {quote(run)}", ["run"], where=str(path))
    try:
        check_keys(run, list(READ_OPTIONS), "run")
    except ConfigError as err:
        raise err.located(str(path)) from None
    return Layer(str(path), data), Layer(str(path), run, lambda name: f"run.{name}")


def config_yaml(config: Any, options: RunOptions) -> str:
    """The effective config as YAML, loadable again with `--config`."""
    data = config_to_dict(config)
    data["run"] = read_options(options)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class DPODataConfig(Config):
    """`deita dpo-data`: the paper's DPO sample, 10K pairs drawn with seed 42."""

    size: int = option(10000, "Pairs to sample (-1: all, shuffled).", min=1, allow=(-1,))
    seed: int = option(42, "Shuffle seed (datasets' Dataset.shuffle(seed=...) order).", min=SEED_RANGE[0],
                       max=SEED_RANGE[1])
