"""What `deita train sft` and `deita train dpo` share: the output folder and resume, the launch (processes,
device), loading the model with the right kernels, and TRL's trainer arguments.

Resume: OUTDIR/deita_run.json records a fingerprint of the recipe and of the exact token data. A rerun of
the same command finds it, takes the newest complete checkpoint (one whose trainer_state.json, written
last, reads back) and hands it to the Trainer, which restores weights, optimizer, scheduler, RNG and data
position. A finished run leaves train_summary.json, and a rerun then has nothing to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.config import field_types
from deita.data import atomic
from deita.data.paths import check_paths, check_writable
from deita.errors import DeitaError, quote
from deita.training.config import TrainConfig
from deita.training.packing import attention_implementation

RUN_FILE = "deita_run.json"
SUMMARY_FILE = "train_summary.json"
CONFIG_FILE = "train_config.yaml"
LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss.png"
REJECTS_FILE = "rejects.jsonl"
DEEPSPEED_DIR = Path(__file__).with_name("deepspeed")
NOT_IN_FINGERPRINT = ("resume", "save_steps", "save_total_limit", "logging_steps", "compile", "liger",
                      "gradient_checkpointing", "attention", "deepspeed")
"""How a run executes, not what it computes: a rerun may change these and still resume."""
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Launch:
    """This process's place in the run, from the launcher's environment (accelerate launch, torchrun)."""

    processes: int
    rank: int
    device_type: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def launch() -> Launch:
    import torch

    return Launch(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                  "cuda" if torch.cuda.is_available() else "cpu")


def is_main_process() -> bool:
    """Whether this is the main process of a launch: the one that writes the rejects file and the model."""
    return int(os.environ.get("RANK", "0")) == 0



def resolve_precision(precision: str, device_type: str) -> str:
    """bf16 on a GPU, fp32 on a CPU, unless set."""
    if precision == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    if precision in ("bf16", "fp16") and device_type != "cuda":
        raise DeitaError(f"--precision {precision} needs a CUDA GPU; on a CPU use fp32 (or auto)")
    return precision


def resolved_flag(value: bool | None, device_type: str) -> bool:
    """An on/off option left unset: on with a GPU, off on a CPU."""
    return device_type == "cuda" if value is None else value


def liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def resolved_settings(config: TrainConfig, launch: Launch) -> dict[str, Any]:
    """What the `auto` options became on this machine (saved in the summary)."""
    gpu = launch.device_type
    return {"device": gpu, "processes": launch.processes,
            "precision": resolve_precision(config.precision, gpu),
            "attention": attention_implementation(config.attention, gpu),
            "gradient_checkpointing": resolved_flag(config.gradient_checkpointing, gpu),
            "compile": resolved_flag(config.compile, gpu),
            "liger": resolved_flag(config.liger, gpu) and liger_available() and gpu == "cuda"}


def deepspeed_config(value: str | None) -> str | None:
    """Path of the DeepSpeed JSON: a shipped preset (zero2, zero3) or the user's file."""
    if value is None:
        return None
    path = DEEPSPEED_DIR / f"{value}.json" if value in ("zero2", "zero3") else Path(value)
    if not path.is_file():
        raise DeitaError(f"--deepspeed {value}: no such file (use zero2, zero3 or a DeepSpeed JSON path)")
    return str(path)


# ---------------------------------------------------------------- the output folder


class OutputFolder:
    """OUTDIR: the final model and tokenizer, checkpoints while training, the run's records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def check(self, inputs: dict[str, str | Path | None], main: bool = True) -> None:
        """Before any work: not an input, writable, and either new, empty, or a deita training folder (checked by
        the main process only: the others may look while it already writes there; a launcher stops them all when
        it fails)."""
        check_paths({label: Path(p) for label, p in inputs.items() if p is not None and Path(p).exists()},
                    {"--output": self.path})
        if self.path.exists() and not self.path.is_dir():
            raise DeitaError(f"--output {self.path}: a file is in the way; training writes a model folder")
        check_writable("--output", self.path / "x")
        visible = [p for p in self.path.iterdir() if not p.name.startswith(".")] if self.path.is_dir() else []
        if main and visible and not self.file(RUN_FILE).exists():
            raise DeitaError(f"--output {self.path}: the folder is not empty and holds no deita training run; "
                             "give a new or empty folder")

    def checkpoints(self) -> list[tuple[int, Path]]:
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
        return sorted(found)

    def newest_checkpoint(self) -> Path | None:
        """The newest checkpoint whose trainer_state.json (the last file the Trainer writes) reads back."""
        for _, path in reversed(self.checkpoints()):
            try:
                json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            return path
        return None

    def recorded(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.file(RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def finished(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.file(SUMMARY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Atomically (a reader in another process never sees half a file)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(self.file(name), (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))

    def clear_run(self) -> None:
        """Remove an earlier run's checkpoints and records (starting over)."""
        for _, path in self.checkpoints():
            shutil.rmtree(path, ignore_errors=True)
        for name in (SUMMARY_FILE, LOG_FILE, CURVE_FILE):
            self.file(name).unlink(missing_ok=True)

    def remove_checkpoints(self) -> None:
        for _, path in self.checkpoints():
            shutil.rmtree(path, ignore_errors=True)


def fingerprint(config: TrainConfig, data_fingerprint: str, launch: Launch) -> dict[str, Any]:
    """What must not change for a rerun to resume: the recipe, the processes and the exact token data."""
    hints = field_types(type(config))
    recipe = {f.name: float(getattr(config, f.name)) if hints[f.name] is float else getattr(config, f.name)
              for f in dataclasses.fields(config) if f.name not in NOT_IN_FINGERPRINT}  # 2 and 2.0: one recipe
    recipe["processes"] = launch.processes
    recipe["data"] = data_fingerprint
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()
    return {"fingerprint": digest, "recipe": recipe}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
    shown = [k if k == "data" else f"{k} {quote(old.get(k))} → {quote(new.get(k))}" for k in keys]
    return ", ".join(shown) or "unknown"


def prepare(folder: OutputFolder, run: dict[str, Any], resume: bool, launch: Launch) -> tuple[str, Path | None]:
    """("done", None) when this exact run finished here, ("resume", checkpoint), or ("start", None).

    Refuses to resume another run's checkpoints; `--no-resume` starts over and removes them.
    """
    recorded = folder.recorded()
    same = recorded is not None and recorded.get("fingerprint") == run["fingerprint"]
    if same and resume and folder.finished() is not None:
        return "done", None
    checkpoint = folder.newest_checkpoint() if same and resume else None
    if recorded is not None and not same and resume and (folder.checkpoints() or folder.finished()):
        raise DeitaError(f"--output {folder.path} holds another training run (changed: "
                         f"{_changes(recorded.get('recipe', {}), run['recipe'])}); rerun with its settings to "
                         "resume, give another --output, or add --no-resume to start over there")
    if launch.main:
        if checkpoint is None:
            folder.clear_run()
        folder.write_json(RUN_FILE, run)
    return ("resume", checkpoint) if checkpoint is not None else ("start", None)


# ---------------------------------------------------------------- the model


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_model(path: str, config: TrainConfig, launch: Launch, frozen: bool = False) -> Any:
    """The model to train, or with `frozen` a reference: fp32 master weights under bf16/fp16 autocast; a frozen
    model (or the base under LoRA, 4-bit with --qlora) in the low precision; the chosen attention kernel;
    Liger kernels when on.

    A LoRA folder from `deita train sft --lora` is loaded with its adapter merged into the base.
    """
    import torch
    from transformers import AutoModelForCausalLM

    precision = resolve_precision(config.precision, launch.device_type)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    kwargs: dict[str, Any] = {"attn_implementation": attention_implementation(config.attention, launch.device_type),
                              "dtype": low if config.lora or frozen else torch.float32}
    if config.qlora and not frozen:
        kwargs["quantization_config"] = _four_bit(launch, low)
    try:
        if is_adapter(path):
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
            model.requires_grad_(not frozen)  # peft loads an adapter for inference, with every weight frozen
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise DeitaError(f"--model {path}: cannot load the model ({str(err).splitlines()[0]})") from None
    if resolved_flag(config.liger, launch.device_type) and liger_available() and launch.device_type == "cuda":
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)
    elif config.liger and not liger_available():
        raise DeitaError("--liger needs the liger-kernel package (pip install liger-kernel) and a CUDA GPU")
    return model


def _four_bit(launch: Launch, compute_dtype: Any) -> Any:
    import importlib.util

    if launch.device_type != "cuda" or importlib.util.find_spec("bitsandbytes") is None:
        raise DeitaError("--qlora needs a CUDA GPU and the bitsandbytes package (pip install bitsandbytes)")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def lora_config(config: TrainConfig) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig

    targets: Any = config.lora_targets
    if targets != "all-linear":
        targets = [name.strip() for name in targets.split(",") if name.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def compile_model(trainer: Any, config: TrainConfig, launch: Launch) -> bool:
    """torch.compile each decoder layer in place (regional compilation, as the prefill engine does)."""
    if not resolved_flag(config.compile, launch.device_type):
        return False
    from deita.runtime.prefill import compile_layers

    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    compile_layers(base.model)
    return True


def trainer_arguments(config: TrainConfig, outdir: Path, launch: Launch, quiet_bar: bool) -> dict[str, Any]:
    """TRL config arguments both trainers take, from deita's config."""
    precision = resolve_precision(config.precision, launch.device_type)
    return {
        "output_dir": str(outdir), "num_train_epochs": config.epochs, "max_steps": config.max_steps,
        "learning_rate": config.learning_rate, "lr_scheduler_type": config.scheduler,
        "warmup_steps": config.warmup_ratio,  # below 1: a share of the steps
        "weight_decay": config.weight_decay, "max_grad_norm": config.max_grad_norm,
        "per_device_train_batch_size": config.per_device_batch, "gradient_accumulation_steps": config.grad_accum,
        "bf16": precision == "bf16", "fp16": precision == "fp16", "use_cpu": launch.device_type == "cpu",
        **checkpointing_arguments(resolved_flag(config.gradient_checkpointing, launch.device_type)),
        "logging_steps": config.logging_steps, "save_strategy": "steps", "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit, "report_to": "none", "seed": config.seed,
        "data_seed": config.seed, "disable_tqdm": not quiet_bar, "deepspeed": deepspeed_config(config.deepspeed),
        "max_length": config.max_length, "dataloader_num_workers": 0,
    }


def checkpointing_arguments(enabled: bool) -> dict[str, Any]:
    """Gradient (activation) checkpointing, under the name this transformers version uses."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    prefix = "activation" if "activation_checkpointing" in names else "gradient"
    return {f"{prefix}_checkpointing": enabled, f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}}


def replace_progress(trainer: Any, terminal_bar: bool) -> None:
    """The trainer's bar on a terminal (without a printed dict per step); nothing of its own in a log file,
    where TrainLog prints plain lines."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from deita.training.artifacts import QuietBar

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if terminal_bar:
        trainer.add_callback(QuietBar())
