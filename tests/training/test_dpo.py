"""DPO through the Python API the CLI calls: the reward margin rises on a tiny pair set."""

from __future__ import annotations

import json
import random

from builders import write_jsonl
from train_helpers import sentence

from deita.runtime.options import RunOptions
from deita.training.config import DPOConfig
from deita.training.dpo import run_dpo


def pairs(n: int) -> list[dict]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        prompt = sentence(rng, 4)
        chosen, rejected = sentence(rng, 3), sentence(rng, 3)
        if i % 2:  # UltraFeedback's shape: message lists that repeat the prompt
            out.append({"prompt": prompt, "chosen": [{"role": "user", "content": prompt},
                                                     {"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "user", "content": prompt},
                                     {"role": "assistant", "content": rejected}]})
        else:
            out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def test_reward_margin_rises_over_30_steps(tiny_llama, tmp_path, one_thread):
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(4))
    config = DPOConfig(model=str(tiny_llama), max_length=80, max_prompt_length=48, max_steps=30, learning_rate=2e-4,
                       warmup_ratio=0.0, per_device_batch=2, grad_accum=1, save_steps=1000)
    summary = run_dpo(data, tmp_path / "dpo", config, RunOptions(quiet=True))
    rows = [json.loads(line) for line in (tmp_path / "dpo" / "train_log.jsonl").read_text().splitlines()]
    margins = [row["rewards/margins"] for row in rows]
    assert len(rows) == 30 and summary.steps == 30 and summary.examples == 4
    assert abs(margins[0]) < 1e-3  # the policy starts as its reference
    assert sum(margins[-5:]) / 5 > sum(margins[:5]) / 5 + 0.5, margins
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "dpo" / "model.safetensors").exists() and (tmp_path / "dpo" / "loss.png").exists()
