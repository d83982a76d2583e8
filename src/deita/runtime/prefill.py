"""The one batched-prefill engine behind scoring and embedding.

A causal LM runs once per length-sorted, token-budgeted batch; only the final hidden state at each
sequence's last real token is kept and handed to a small *head* (the six digit rows of the LM head for
scorers, identity for embeddings). The full vocabulary logits are never computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deita.errors import DeitaError
from deita.runtime.batching import plan_batches
from deita.runtime.devices import resolve_device, resolve_dtype

Head = Callable[[torch.Tensor], torch.Tensor]
"""Maps last-token hidden states (batch, hidden) to per-sequence outputs (batch, ...)."""


@dataclass(frozen=True)
class ModelSpec:
    """Which causal LM to load and where to run it."""

    model: str
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str | None = None


def load_causal_lm(spec: ModelSpec):
    """Load a causal LM and its tokenizer from a hub id or a local directory, in eval mode on the device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.model)
        kwargs = {"dtype": dtype}
        if spec.attn_implementation:
            kwargs["attn_implementation"] = spec.attn_implementation
        model = AutoModelForCausalLM.from_pretrained(spec.model, **kwargs)
    except OSError as err:
        where = "directory" if Path(spec.model).exists() else "model id (no network? pass a local directory)"
        raise DeitaError(f"cannot load causal LM from {where} '{spec.model}': {err}") from err
    model.to(device).eval()
    return model, tokenizer


class PrefillEngine:
    """Runs a causal LM's decoder over many token sequences and returns one head output per sequence.

    Batches are right-padded and run without an attention mask: under the causal mask a real token never
    sees the padding after it, so each sequence's last real position is exact, and attention takes the
    fused causal (flash) path instead of materialising a padded 4-D mask.
    """

    def __init__(self, model: torch.nn.Module, batch_tokens: int = 16384, max_batch_size: int = 1024,
                 compile: bool = False) -> None:
        self.model = model
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        if compile:  # fuses the elementwise work between matmuls; costs a warm-up per new shape bucket
            self.decoder = torch.compile(self.decoder, dynamic=True)
        self.device = next(model.parameters()).device
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size

    @torch.inference_mode()
    def run(self, sequences: Sequence[Sequence[int]], head: Head) -> np.ndarray:
        """Head outputs for every sequence, in input order (float32)."""
        if not sequences:
            raise ValueError("no sequences to run")
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        if lengths.min() == 0:
            raise DeitaError(f"sequence {int(lengths.argmin())} is empty after tokenization")
        pinned = self.device.type == "cuda"
        order, results = [], []
        for batch in plan_batches(lengths, self.batch_tokens, self.max_batch_size):
            width = int(lengths[batch].max())
            staged = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                staged[row, : lengths[index]] = sequences[index]
            input_ids = torch.from_numpy(staged)
            if pinned:
                input_ids = input_ids.pin_memory()
            input_ids = input_ids.to(self.device, non_blocking=True)
            hidden = self.decoder(input_ids=input_ids, use_cache=False).last_hidden_state
            last = torch.as_tensor(lengths[batch] - 1, device=self.device)
            results.append(head(hidden[torch.arange(len(batch), device=self.device), last]).float())
            order.append(batch)
        stacked = torch.cat(results).cpu().numpy()  # one device→host copy, no sync per batch
        outputs = np.empty_like(stacked)
        outputs[np.concatenate(order)] = stacked
        return outputs


def identity_head(hidden: torch.Tensor) -> torch.Tensor:
    """Embedding head: the final hidden state itself."""
    return hidden


def token_logprob_head(model: torch.nn.Module, token_ids: Sequence[int]) -> Head:
    """Scorer head: log-softmax over the LM-head rows of `token_ids` only (6 rows instead of the vocabulary).

    Softmax over a subset of logits equals the full softmax renormalised over that subset, so these are
    the digit log-probabilities up to a shared constant, which the expected score does not see.
    """
    lm_head = model.get_output_embeddings()
    index = torch.as_tensor(list(token_ids), device=lm_head.weight.device)
    weight = lm_head.weight.index_select(0, index).float()
    bias = lm_head.bias.index_select(0, index).float() if getattr(lm_head, "bias", None) is not None else None

    def head(hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden.float() @ weight.T
        if bias is not None:
            logits = logits + bias
        return torch.log_softmax(logits, dim=-1)

    return head
