"""Scoring backends, in one table: `BACKENDS` maps a `--backend` name to its class. A new backend is one
module here (a class with an `Options` dataclass, `digit_logprobs` and `fingerprint`, see `base`) plus one
line in the table; its options become a section of `ScoreConfig` (its YAML key, its flags) by themselves.

The modules are light: each imports its engine (torch, vllm) when a backend is built, not here.
"""

from __future__ import annotations

from .hf import HFBackend
from .openai import OpenAIBackend
from .vllm import VLLMBackend

BACKENDS: dict[str, type] = {
    "hf": HFBackend,
    "vllm": VLLMBackend,
    "openai": OpenAIBackend,
}

__all__ = ["BACKENDS"]
