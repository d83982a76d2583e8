"""Packing without cross-talk, from TRL and transformers (deita writes no collator of its own).

TRL packs the tokenized conversations into rows of at most max_length tokens (best-fit decreasing) and its
padding-free collator flattens each micro-batch into one row with per-conversation position ids (and
cumulative lengths). transformers then keeps attention inside each conversation: flash-attention varlen
reads the cumulative lengths; sdpa, eager and flex attention get a block-diagonal causal mask built from the
position ids (`masking_utils.find_packed_sequence_indices`). The label of each conversation's first token
is dropped, so no conversation is trained to follow the one before it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from deita.errors import DeitaError

PACKING_STRATEGY = "bfd"
"""Best-fit decreasing: whole conversations per row (a conversation longer than a row is cut, never split)."""


def attention_implementation(choice: str, device_type: str) -> str:
    """The attention kernel to load the model with: flash-attention varlen where installed on a GPU, else sdpa."""
    flash = device_type == "cuda" and importlib.util.find_spec("flash_attn") is not None
    if choice == "auto":
        return "flash_attention_2" if flash else "sdpa"
    if choice == "flash_attention_2" and not flash:
        raise DeitaError("--attention flash_attention_2 needs a CUDA GPU and the flash-attn package; use "
                         "--attention auto")
    return choice


def trainer_packing(packing: bool) -> dict[str, Any]:
    """The TRL SFTConfig settings for packed (padding-free) or plainly padded batches."""
    return {"packing": packing, "packing_strategy": PACKING_STRATEGY, "padding_free": packing}
