"""Crash and scale: `kill -9` then the same command resumes to the same weights; 2 processes (gloo) follow the
same loss curve as 1 process with twice the accumulation. Both through the installed `deita` command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from builders import write_jsonl
from safetensors.torch import load_file
from train_helpers import conversations

from deita.runtime.options import RunOptions
from deita.training.config import SFTConfig
from deita.training.sft import run_sft

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# short rows, several steps; the tiny model's 32K-word LM head is most of the cost on a CPU
RECIPE = {"max_length": 48, "epochs": 2, "per_device_batch": 1, "warmup_ratio": 0.1, "learning_rate": 1e-3, "seed": 3}


def flags(config: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in config.items()]


def log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_kill_9_then_the_same_command_resumes_to_the_same_weights(tiny_llama, tmp_path, one_thread):
    data = write_jsonl(tmp_path / "data.jsonl", conversations(12, seed=5, words=4))
    recipe = {**RECIPE, "grad_accum": 1, "save_steps": 3}
    run_sft(data, tmp_path / "straight", SFTConfig(model=str(tiny_llama), **recipe), RunOptions(quiet=True))
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    steps = len(log(tmp_path / "straight"))

    out = tmp_path / "killed"
    command = [DEITA, "train", "sft", str(data), "-o", str(out), "--model", str(tiny_llama), *flags(recipe),
               "--progress-interval", "0"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint-3" / "trainer_state.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "train_summary.json").exists() and not (out / "model.safetensors").exists()

    rerun = subprocess.run(command, env=ENV, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming after step" in rerun.stderr and "resumed from checkpoint-" in rerun.stdout
    resumed = load_file(out / "model.safetensors")
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.allclose(resumed[name], tensor, atol=1e-5, rtol=0), name
    assert [row["step"] for row in log(out)] == list(range(1, steps + 1))  # no step logged twice

    again = run_sft(data, out, SFTConfig(model=str(tiny_llama), **recipe), RunOptions(quiet=True))
    assert again.already_done and "already holds this finished run" in again.lines()[0]  # nothing left to do


@pytest.mark.slow
def test_two_processes_follow_one_process_with_twice_the_accumulation(tiny_llama, tmp_path, one_thread):
    data = write_jsonl(tmp_path / "data.jsonl", conversations(16, seed=9, words=4))
    recipe = {**RECIPE, "epochs": 1, "save_steps": 1000}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(29500 + os.getpid() % 1000), "-m", "deita.cli"]
    two = subprocess.run([*launcher, "train", "sft", str(data), "-o", str(tmp_path / "two"), "--model",
                          str(tiny_llama), *flags({**recipe, "grad_accum": 1}), "-q"],
                         env=ENV, capture_output=True, text=True, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    run_sft(data, tmp_path / "one", SFTConfig(model=str(tiny_llama), **recipe, grad_accum=2), RunOptions(quiet=True))
    one_rows, two_rows = log(tmp_path / "one"), log(tmp_path / "two")
    assert len(one_rows) == len(two_rows) >= 4
    for a, b in zip(one_rows, two_rows, strict=True):
        assert a["step"] == b["step"]
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)
        assert abs(a["learning_rate"] - b["learning_rate"]) < 1e-12
    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert summary["global_batch"].startswith("2 rows = 1 × 1 × 2 processes")
