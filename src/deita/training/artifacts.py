"""What a training run leaves besides the model: train_log.jsonl, progress, the loss curve.

Callbacks of the HF Trainer, so the training loop stays TRL's. Only the main process writes or prints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from deita.data.policy import rejected_line

LOGGED = ("loss", "learning_rate", "grad_norm", "entropy", "mean_token_accuracy", "rewards/chosen",
          "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")
"""Trainer metrics copied into train_log.jsonl (those present)."""


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: the rerun writes it again
            continue
    return rows


class TrainLog(TrainerCallback):
    """One JSON line per logged optimizer step: step, epoch, loss, learning rate, tokens and tokens/s, the rest
    of the trainer's metrics. A resumed run first drops the rows past the checkpoint it continues from.

    With `stream` (a log file, not a terminal) it also prints a plain, flushed line every `interval` seconds.
    """

    def __init__(self, path: Path, stream: TextIO | None = None, interval: float = 30.0) -> None:
        self.path, self.stream, self.interval = path, stream, interval
        self.rows: list[dict[str, Any]] = []
        self.new_rows: list[dict[str, Any]] = []  # logged by this process (not read back from a resumed run)
        self._tokens = 0.0
        self._time = self._start = self._last_line = 0.0

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self._time = self._start = time.perf_counter()
        self._last_line = -math.inf
        self._tokens = 0.0
        self.new_rows = []
        if state.is_world_process_zero:
            kept = [row for row in read_log(self.path) if row.get("step", 0) <= state.global_step]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
            self.rows = kept
            if self.stream is not None:
                resumed = f", resuming after step {state.global_step:,}" if state.global_step else ""
                self.stream.write(f"training: {state.max_steps:,} optimizer steps{resumed}\n")
                self.stream.flush()

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        tokens = float(logs.get("num_tokens", 0.0))  # TRL's count of this process's lifetime, all ranks
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4)}
        row.update({key: float(logs[key]) for key in LOGGED if key in logs})
        row["tokens"] = tokens
        row["tokens_per_s"] = (tokens - self._tokens) / max(now - self._time, 1e-9)
        row["seconds"] = round(now - self._start, 3)
        self._tokens, self._time = tokens, now
        self.rows.append(row)
        self.new_rows.append(row)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.stream is not None and (now - self._last_line >= self.interval or state.global_step >= state.max_steps):
            self._last_line = now
            self.stream.write(progress_line(row, state.max_steps, now - self._start) + "\n")
            self.stream.flush()


    def mean_rate(self) -> float | None:
        """Tokens/s from the first step this process logged to its last (start-up and compilation left out)."""
        rows = self.new_rows
        if len(rows) < 2:
            return rows[0]["tokens_per_s"] if rows else None
        seconds = rows[-1]["seconds"] - rows[0]["seconds"]
        return (rows[-1]["tokens"] - rows[0]["tokens"]) / seconds if seconds > 0 else None


def progress_line(row: dict[str, Any], max_steps: int, elapsed: float) -> str:
    step = row["step"]
    text = f"step {step:,}/{max_steps:,} ({100 * step / max(max_steps, 1):.0f} %), loss {row['loss']:.4f}"
    if "rewards/margins" in row:
        text += f", reward margin {row['rewards/margins']:.4f}"
    if row.get("learning_rate") is not None:
        text += f", lr {row['learning_rate']:.3g}"
    text += f", {row['tokens_per_s']:,.0f} tokens/s, elapsed {_clock(elapsed)}"
    return text


class QuietBar(ProgressCallback):
    """The trainer's bar, showing the loss beside it instead of printing every log as a dict."""

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)


def use_terminal_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def plot_loss(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """A PNG of the loss per step (and the DPO reward margin when logged), with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    margins = [row for row in rows if "rewards/margins" in row]
    fig, axes = plt.subplots(1, 2 if margins else 1, figsize=(10 if margins else 6, 4), squeeze=False)
    axes[0][0].plot([row["step"] for row in rows], [row["loss"] for row in rows], color="tab:blue")
    axes[0][0].set_xlabel("optimizer step")
    axes[0][0].set_ylabel("loss")
    axes[0][0].set_title(title)
    axes[0][0].grid(alpha=0.3)
    if margins:
        axes[0][1].plot([row["step"] for row in margins], [row["rewards/margins"] for row in margins],
                        color="tab:green")
        axes[0][1].set_xlabel("optimizer step")
        axes[0][1].set_ylabel("reward margin (chosen − rejected)")
        axes[0][1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class TrainSummary:
    """What a training run did, printed at the end and saved as OUTDIR/train_summary.json."""

    kind: str  # "sft" or "dpo"
    output: str
    model: str
    template: str
    examples: int  # conversations (SFT) or pairs (DPO) trained on
    records: int
    rejected: int
    rejects: str | None
    truncated: int  # conversations cut at max_length (SFT) or prompts cut at max_prompt_length (DPO)
    left_out: int  # SFT: conversations with no answer token within max_length
    rows: int  # packed rows (SFT with packing), else examples
    steps: int
    epochs: float
    global_batch: str
    first_loss: float | None
    last_loss: float | None
    tokens_per_s: float | None
    seconds: float
    resumed_from: str | None = None
    last_margin: float | None = None
    resolved: dict[str, Any] = dataclasses.field(default_factory=dict)
    rejected_kinds: str = ""  # the rejects counted by kind ("1 parse, 1 empty")
    already_done: bool = False
    main: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("already_done", "main")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def lines(self) -> list[str]:
        if not self.main:
            return []
        what = {"sft": "conversations", "dpo": "pairs", "scorer": "ranked variants"}[self.kind]
        if self.already_done:
            return [f"{self.output} already holds this finished run ({self.steps:,} steps on {self.examples:,} "
                    f"{what}); nothing to do. Use --no-resume to train again."]
        packed = f" packed into {self.rows:,} rows" if self.kind != "dpo" and self.rows != self.examples else ""
        recipe = f"{self.kind}, {self.template} template" if self.kind != "scorer" else "scorer: prompt → score digit"
        lines = [f"trained {self.model} ({recipe}) on {self.examples:,} {what}{packed}: "
                 f"{self.steps:,} optimizer steps, {self.epochs:g} epoch{'' if self.epochs == 1 else 's'}, global batch "
                 f"{self.global_batch}"]
        if self.resolved:
            on = [name.replace("_", " ") for name in ("gradient_checkpointing", "compile", "liger") if self.resolved[name]]
            lines.append(f"{self.resolved['device']}, {self.resolved['precision']}, {self.resolved['attention']} attention"
                         + "".join(f", {name}" for name in on))
        if self.resumed_from:
            lines.append(f"resumed from {self.resumed_from}")
        if self.first_loss is not None and self.last_loss is not None:
            figures = f"loss {self.first_loss:.4f} → {self.last_loss:.4f}"
            if self.last_margin is not None:
                figures += f", reward margin {self.last_margin:.4f}"
            if self.tokens_per_s:
                figures += f", {self.tokens_per_s:,.0f} tokens/s"
            lines.append(figures + f", {_clock(self.seconds)}")
        lines += rejected_line(self.rejected, self.rejected_kinds, self.rejects, of=self.records)
        if self.truncated:
            cut = {"sft": "conversations cut at --max-length", "dpo": "prompts cut at --max-prompt-length",
                   "scorer": "scorer prompts cut at --max-length, as deita score cuts them"}[self.kind]
            lines.append(f"{self.truncated:,} {cut}")
        if self.left_out:
            lines.append(f"left out {self.left_out:,} conversations with no answer token within --max-length")
        if self.kind == "scorer":
            lines.append(f"→ {self.output}: scorer and tokenizer (use it with `deita score --model {self.output}`), "
                         f"{LOG_NAMES}")
        else:
            chat = "the Vicuna v1.1 chat template" if self.template == "vicuna" else "the model's chat template"
            lines.append(f"→ {self.output}: model and tokenizer (with {chat}), {LOG_NAMES}")
        return lines


LOG_NAMES = "train_log.jsonl, loss.png, train_config.yaml, train_summary.json"
