"""SFT through the Python API the CLI calls: it learns (overfits a tiny set) and leaves a usable folder."""

from __future__ import annotations

import json

from builders import write_jsonl
from train_helpers import conversations
from transformers import AutoTokenizer, TrainerCallback

from deita.data.io import iter_records
from deita.runtime.options import RunOptions
from deita.training.config import SFTConfig
from deita.training.render import bos_prefix, render_vicuna, tokenize
from deita.training.sft import run_sft


class StopAtHalf(TrainerCallback):
    """Ends training once the loss has dropped to half its first value (the test's claim), saving steps."""

    def __init__(self) -> None:
        self.first = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.first = self.first if self.first is not None else logs["loss"]
            if logs["loss"] <= self.first / 2:
                control.should_training_stop = True


def test_overfits_eight_conversations_within_60_steps(tiny_llama, tmp_path, one_thread):
    data = write_jsonl(tmp_path / "eight.jsonl", conversations(8, seed=1, words=10))
    config = SFTConfig(model=str(tiny_llama), max_length=256, max_steps=60, learning_rate=3e-3, warmup_ratio=0.0,
                       scheduler="constant", per_device_batch=2, grad_accum=1, save_steps=1000, seed=0)
    summary = run_sft(data, tmp_path / "out", config, RunOptions(quiet=True), callbacks=[StopAtHalf()])
    rows = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) <= 60 and rows[0]["loss"] > 0
    assert min(row["loss"] for row in rows) <= rows[0]["loss"] / 2, [round(r["loss"], 3) for r in rows]
    assert summary.steps == len(rows) and summary.examples == 8
    assert all(row["tokens_per_s"] > 0 and row["learning_rate"] == 3e-3 for row in rows)

    # the output folder: an HF model with a tokenizer whose chat template renders exactly the training text
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "loss.png", "train_config.yaml",
                 "train_summary.json"):
        assert (out / name).exists(), name
    assert not list(out.glob("checkpoint-*"))
    tokenizer = AutoTokenizer.from_pretrained(out)
    for record in iter_records(data):
        messages = [{"role": "user" if m["from"] in ("human", "user") else "assistant", "content": m["value"]}
                    for m in record.raw["conversations"]]
        trained = render_vicuna(record.turns, bos_prefix(tokenizer), tokenizer.eos_token)
        assert tokenizer.apply_chat_template(messages, tokenize=False) == trained.text
        assert tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"] == tokenize(
            tokenizer, trained, 256).input_ids
