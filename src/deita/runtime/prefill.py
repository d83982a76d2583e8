"""The one batched-prefill engine behind scoring and embedding.

A causal LM runs once per length-sorted, token-budgeted batch. `run` keeps only the final hidden state at
each sequence's last real token and hands it to a small *head* (the six digit rows of the LM head for
scorers, identity for embeddings): the full vocabulary logits are never computed. `run_spans` keeps the
hidden states that predict a span of each sequence's tokens and hands them to a span head (the mean
negative log-likelihood for IFD), which computes vocabulary logits chunk by chunk on the device and
returns one number per sequence.
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
from deita.runtime.models import GGUF_HINT, gguf_missing, pretrained_location

Head = Callable[[torch.Tensor], torch.Tensor]
"""Maps last-token hidden states (batch, hidden) to per-sequence outputs (batch, ...)."""
SpanHead = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
"""Maps the hidden states that predict span tokens (n, hidden), those tokens' ids (n,) and the batch row each
belongs to (n,), for a batch of `rows` sequences, to per-sequence outputs (rows, ...)."""

LOGIT_CHUNK_BYTES = 256 * 2**20
"""Bound on one chunk of float32 vocabulary logits in a span head: 1,365 positions of a 49K vocabulary."""


@dataclass(frozen=True)
class ModelSpec:
    """Which causal LM to load and where to run it."""

    model: str
    """A hub id, a local directory, a `.gguf` file, or a directory holding one `.gguf` file."""
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str | None = None


def load_causal_lm(spec: ModelSpec):
    """Load a causal LM and its tokenizer, in eval mode on the device (a GGUF file is dequantised)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    location, extra = pretrained_location(spec.model)
    if gguf_missing(extra):
        raise DeitaError(f"{spec.model}: {GGUF_HINT}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **extra)
        kwargs = {"dtype": dtype, **extra}
        if spec.attn_implementation:
            kwargs["attn_implementation"] = spec.attn_implementation
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
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
        lengths = _checked_lengths(sequences)

        def step(batch: np.ndarray, width: int) -> torch.Tensor:
            staged = np.zeros((len(batch), width + 1), dtype=np.int64)  # last column: last real position
            for row, index in enumerate(batch):
                staged[row, : lengths[index]] = sequences[index]
            staged[:, width] = lengths[batch] - 1
            on_device = self._to_device(torch.from_numpy(staged))
            input_ids, last = on_device[:, :width], on_device[:, width]
            hidden = self.decoder(input_ids=input_ids, use_cache=False).last_hidden_state
            return head(hidden[torch.arange(len(batch), device=self.device), last])

        return self._run_batches(lengths, step)

    @torch.inference_mode()
    def run_spans(self, sequences: Sequence[Sequence[int]], starts: Sequence[int], head: SpanHead) -> np.ndarray:
        """Span-head outputs for every sequence, in input order (float32).

        Sequence i's span is its tokens from `starts[i]` (at least 1: the first token has no prediction) to
        its end; the hidden state at position t-1 predicts token t. Only the predicting positions leave the
        decoder's output, gathered with indices built on the host, so a batch needs one host→device copy and
        no synchronisation.
        """
        lengths = _checked_lengths(sequences)
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) != len(lengths):
            raise ValueError(f"{len(starts)} span starts for {len(lengths)} sequences")
        bad = np.flatnonzero((starts < 1) | (starts >= lengths))
        if len(bad):
            i = int(bad[0])
            raise DeitaError(f"sequence {i}: span start {starts[i]} leaves no predicted token in {lengths[i]} tokens")

        def step(batch: np.ndarray, width: int) -> torch.Tensor:
            rows = len(batch)
            predicting = [np.arange(row * width + starts[index] - 1, row * width + lengths[index] - 1)
                          for row, index in enumerate(batch)]
            count = sum(len(p) for p in predicting)
            staged = np.zeros(rows * width + 2 * count, dtype=np.int64)  # token ids | positions | their rows
            for row, index in enumerate(batch):
                staged[row * width : row * width + lengths[index]] = sequences[index]
            staged[rows * width : rows * width + count] = np.concatenate(predicting)
            staged[rows * width + count :] = np.repeat(np.arange(rows), [len(p) for p in predicting])
            on_device = self._to_device(torch.from_numpy(staged))
            token_ids = on_device[: rows * width]
            positions, owners = on_device[rows * width : rows * width + count], on_device[rows * width + count :]
            hidden = self.decoder(input_ids=token_ids.view(rows, width), use_cache=False).last_hidden_state
            states = hidden.reshape(rows * width, -1).index_select(0, positions)
            return head(states, token_ids.index_select(0, positions + 1), owners, rows)

        return self._run_batches(lengths, step)

    def _run_batches(self, lengths: np.ndarray, step: Callable[[np.ndarray, int], torch.Tensor]) -> np.ndarray:
        """`step(batch indices, padded width)` over the length-sorted token-budget batches, in input order."""
        order, results = [], []
        for batch in plan_batches(lengths, self.batch_tokens, self.max_batch_size):
            results.append(step(batch, int(lengths[batch].max())).float())
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


def _checked_lengths(sequences: Sequence[Sequence[int]]) -> np.ndarray:
    if not sequences:
        raise ValueError("no sequences to run")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if lengths.min() == 0:
        raise DeitaError(f"sequence {int(lengths.argmin())} is empty after tokenization")
    return lengths


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


def mean_nll_head(model: torch.nn.Module, chunk_bytes: int = LOGIT_CHUNK_BYTES) -> SpanHead:
    """Span head: each sequence's mean negative log-likelihood of its span tokens, in float32.

    Vocabulary logits exist for one chunk of positions at a time (at most `chunk_bytes` of float32), so
    memory stays bounded however long the spans; a model's final logit soft-capping (Gemma 2) is applied as
    its own forward pass does.
    """
    lm_head = model.get_output_embeddings()
    chunk = max(1, chunk_bytes // (4 * lm_head.weight.shape[0]))
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)

    def head(states: torch.Tensor, targets: torch.Tensor, owners: torch.Tensor, rows: int) -> torch.Tensor:
        total = torch.zeros(rows, dtype=torch.float32, device=states.device)
        count = torch.zeros(rows, dtype=torch.float32, device=states.device).index_add_(
            0, owners, torch.ones_like(owners, dtype=torch.float32))  # bincount would wait for the GPU
        for lo in range(0, states.shape[0], chunk):
            logits = lm_head(states[lo : lo + chunk]).float()
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            picked = logits.gather(1, targets[lo : lo + chunk, None])[:, 0]
            total.index_add_(0, owners[lo : lo + chunk], torch.logsumexp(logits, dim=-1) - picked)
        return total / count

    return head
