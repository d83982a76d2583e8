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
from deita.runtime.batching import DEFAULT_BATCH_TOKENS, plan_batches
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
    fused causal (flash) path instead of materialising a padded 4-D mask. `compile` (default: on a GPU)
    compiles the decoder layers; the first batches of each new shape range pay a warm-up of seconds.
    """

    def __init__(self, model: torch.nn.Module, batch_tokens: int = DEFAULT_BATCH_TOKENS, max_batch_size: int = 1024,
                 compile: bool | None = None) -> None:
        self.model = model
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
        self.device = next(model.parameters()).device
        self.compiled = self.device.type == "cuda" if compile is None else compile
        if self.compiled:
            compile_layers(self.decoder)
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
        order, results = [], []
        for batch in plan_batches(lengths, self.batch_tokens, self.max_batch_size):
            width = int(lengths[batch].max())
            staged = np.zeros((len(batch), width + 1), dtype=np.int64)  # last column: last real position
            for row, index in enumerate(batch):
                staged[row, : lengths[index]] = sequences[index]
            staged[:, width] = lengths[batch] - 1
            on_device = self._to_device(torch.from_numpy(staged))
            input_ids, last = on_device[:, :width], on_device[:, width]
            hidden = self.decoder(input_ids=input_ids, use_cache=False).last_hidden_state
            results.append(head(hidden[torch.arange(len(batch), device=self.device), last]).float())
            order.append(batch)
        stacked = torch.cat(results).cpu().numpy()  # one device→host copy, no sync per batch
        outputs = np.empty_like(stacked)
        outputs[np.concatenate(order)] = stacked
        return outputs

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """One asynchronous copy per batch: from pinned memory the host never waits for the GPU to drain."""
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)


def compile_layers(decoder: torch.nn.Module) -> None:
    """torch.compile each decoder layer in place (regional compilation), fusing the elementwise work between matmuls.

    The layers share their code, so one compilation serves all of them, and the causal mask is built outside
    the compiled region: compiling the whole decoder makes transformers (before torch 2.14) materialise a
    dense mask, which takes attention off its fused `is_causal` path.
    """
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise DeitaError(f"cannot compile {type(decoder).__name__}: it has no `layers` list; run without compile")
    for layer in layers:
        layer.compile(dynamic=True)


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
