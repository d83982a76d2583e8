"""Training on the selection: SFT and DPO on TRL with the paper's recipe (DEITA.md §5).

config.py   SFTConfig / DPOConfig: the flags, YAML keys and defaults (the paper's recipe)
render.py   Vicuna v1.1 (shared with the embedder) or the model's chat template → token ids + label mask
packing.py  attention kernel choice; packing itself is TRL's (best-fit rows, per-conversation position ids)
data.py     SFT examples from any deita input; DPO pairs (UltraFeedback style) with rejects; `deita dpo-data`
sft.py      `deita train sft`: TRL's SFTTrainer;  dpo.py  `deita train dpo`: TRL's DPOTrainer
run.py      what both share: output folder, resume, model loading, trainer arguments
artifacts.py  train_log.jsonl, progress lines, loss curve PNG

Importing `deita` never imports TRL: the training dependencies are the `train` extra, imported when a
training command runs (`require_training`).
"""

from __future__ import annotations

import importlib.util

from deita.errors import DeitaError

TRAIN_EXTRA_HINT = "install the training extra: pip install -e '.[train]'"
_REQUIRED = ("trl", "peft", "accelerate", "matplotlib")


def require_training() -> None:
    """Raise one clear DeitaError naming a missing training dependency (found without importing it)."""
    for name in _REQUIRED:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise DeitaError(f"deita train needs the package '{name}', which is not installed; {TRAIN_EXTRA_HINT}")
