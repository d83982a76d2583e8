"""Score-token ids: the single tokens for "1".."6" as the model emits them right after the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deita.errors import DeitaError
from deita.runtime.models import GGUF_HINT, gguf_missing, pretrained_location
from deita.scoring.templates import render

DIGITS = ("1", "2", "3", "4", "5", "6")


def score_token_ids(tokenizer, override: Sequence[int] | None = None) -> list[int]:
    """Derive the six digit token ids from the tokenizer, or validate an explicit override.

    A digit's id is the one token that appending it to a real prompt adds (so LLaMA yields "1" = 29896, not
    "▁1"); where that does not isolate one token, the vocabulary entry for the bare digit is used.
    """
    if override is not None:
        ids = [int(i) for i in override]
        if len(ids) != 6 or len(set(ids)) != 6:
            raise DeitaError(f"--score-token-ids needs 6 distinct ids for the digits 1..6, got {ids}")
        return ids
    prompt = render("complexity", "x")
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = []
    for digit in DIGITS:
        extended = tokenizer(prompt + digit, add_special_tokens=False)["input_ids"]
        if len(extended) == len(base) + 1 and extended[: len(base)] == base:
            ids.append(extended[-1])
            continue
        vocab_id = tokenizer.convert_tokens_to_ids(digit)
        if vocab_id is None or vocab_id == tokenizer.unk_token_id:
            raise DeitaError(
                f"the tokenizer has no single token for the digit '{digit}' after the prompt "
                f"(it becomes {tokenizer.convert_ids_to_tokens(extended[len(base):])}); "
                "pass the six ids with --score-token-ids"
            )
        ids.append(vocab_id)
    if len(set(ids)) != 6:
        raise DeitaError(f"digit tokens are not distinct: {ids}; pass --score-token-ids")
    return ids


def load_tokenizer(model: str):
    """A scorer's tokenizer alone (prompt truncation and digit ids need it), as a DeitaError if it cannot load."""
    from transformers import AutoTokenizer

    location, extra = pretrained_location(model)
    if gguf_missing(extra):
        raise DeitaError(f"{model}: {GGUF_HINT}")
    try:
        return AutoTokenizer.from_pretrained(location, **extra)
    except OSError as err:
        where = "directory" if Path(model).exists() else "model id (no network? pass a local directory)"
        raise DeitaError(f"cannot load the scorer's tokenizer from {where} '{model}': {err}") from err
