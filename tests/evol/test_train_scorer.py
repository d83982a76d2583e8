"""The round trip: EVOL data from a fake LLM → `deita train scorer` → `deita score --model DIR` ranks held-out
instructions in the true order."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from builders import write_jsonl
from chat_server import evolve_text, phrases, seed_records
from evol_helpers import run_evol, run_rank

pytest.importorskip("trl")
DEITA = shutil.which("deita")


def spearman(a: list[float], b: list[float]) -> float:
    ranks = [np.argsort(np.argsort(x, kind="stable")).astype(float) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


@pytest.mark.slow
def test_trained_scorer_ranks_held_out_instructions(chat_server, tiny_llama, tmp_path):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", seed_records(24))
    _, evolved, _ = run_evol(chat_server, seeds, tmp_path / "evolved.jsonl", concurrency=4)
    _, ranked, rejects = run_rank(chat_server, tmp_path / "evolved.jsonl", tmp_path / "ranked.jsonl", concurrency=4)
    assert len(ranked) == 24 and not rejects
    result = subprocess.run([DEITA, "train", "scorer", tmp_path / "ranked.jsonl", "-o", tmp_path / "scorer",
                             "--model", tiny_llama, "--type", "complexity", "--max-length", "128",
                             "--learning-rate", "3e-3", "--max-steps", "15", "--per-device-batch", "8",
                             "--grad-accum", "1", "--warmup-ratio", "0.05", "--save-steps", "1000", "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    held_out = []
    for seed in seed_records(6, start=50):
        text = seed["instruction"]
        for _ in range(6):
            held_out.append({"id": f"{seed['id']}-{phrases(text)}", "instruction": text, "input": "", "output": "ok"})
            text = evolve_text(text)
    write_jsonl(tmp_path / "held_out.jsonl", held_out)
    subprocess.run([DEITA, "score", tmp_path / "held_out.jsonl", "-o", tmp_path / "scored.jsonl", "--model",
                    tmp_path / "scorer", "--type", "complexity", "-q"], check=True, capture_output=True)
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    predicted = [r["complexity_scores"][0] for r in scored]
    truth = [phrases(r["instruction"]) for r in scored]
    rho = spearman(predicted, truth)
    print(f"Spearman of the trained scorer on held-out instructions: {rho:.3f}")
    assert rho >= 0.7
