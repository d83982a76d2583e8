"""A static embedding model distilled from a sentence-transformers model, in the manner of model2vec.

Distillation (once per source model, then cached): every vocabulary token goes through the model alone
(`[CLS] token [SEP]`, mean-pooled as the model pools a sentence), the token vectors are reduced by PCA
and weighted by a Zipf prior on the token's rank (SIF: frequent tokens count less). A text's embedding
is then the mean of its tokens' vectors: no model at run time, milliseconds per conversation, and the
whole conversation counts (up to `max_length` tokens), not only its first 256 tokens.

model2vec's own `distill` extra pins transformers below 5, which this project needs, so the few steps
are written here on top of transformers and tokenizers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from deita.data import atomic
from deita.embedding.templates import render_plain
from deita.errors import DeitaError
from deita.runtime.stage import WorkResult

if TYPE_CHECKING:
    from deita.embedding.embedder import EmbedConfig

log = logging.getLogger(__name__)

DISTILL_VERSION = 1
"""Bumped when the distillation changes, so older cached models are not reused."""
SIF_COEFFICIENT = 1e-4
"""Weight of a token of rank r: a / (a + p(r)) with p the Zipf prior ∝ 1/(r + 2), as model2vec does."""
CACHE_ENV = "DEITA_CACHE"
CHARS_PER_TOKEN_LIMIT = 16
"""Text beyond `max_length × this` characters is cut before tokenizing (WordPiece averages ~4)."""


def default_cache_dir() -> Path:
    """Where distilled models are kept: $DEITA_CACHE/static, else ~/.cache/deita/static."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "static" if root else Path.home() / ".cache" / "deita" / "static"


def model_content_key(model_dir: str | Path, dims: int) -> str:
    """A key from the bytes of the model's weights and tokenizer and the distillation settings."""
    model_dir = Path(model_dir)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps({"version": DISTILL_VERSION, "dims": dims, "sif": SIF_COEFFICIENT}).encode())
    files = [p for p in sorted(model_dir.iterdir()) if p.is_file() and p.suffix in (".safetensors", ".bin", ".json")]
    if not files:
        raise DeitaError(f"{model_dir}: no model files to distil a static model from")
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def distill(model_dir: str | Path, dims: int, batch_size: int = 1024) -> np.ndarray:
    """(vocab, dims) float32 token vectors: each token through the model alone, PCA, SIF weights."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    vocab = len(tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise DeitaError(f"{model_dir}: the tokenizer has no [CLS]/[SEP] tokens to wrap single tokens in")
    rows = []
    with torch.inference_mode():
        for start in range(0, vocab, batch_size):
            ids = torch.arange(start, min(start + batch_size, vocab))
            batch = torch.stack([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            rows.append(hidden.mean(dim=1).float().numpy())  # the model's mean pooling over the 3 positions
    vectors = np.concatenate(rows).astype(np.float64)
    vectors -= vectors.mean(axis=0)
    _, _, components = np.linalg.svd(vectors, full_matrices=False)
    dims = min(dims, vectors.shape[1])
    reduced = vectors @ components[:dims].T
    prior = 1.0 / np.arange(2, vocab + 2)
    prior /= prior.sum()
    weights = SIF_COEFFICIENT / (SIF_COEFFICIENT + prior)
    return (reduced * weights[:, None]).astype(np.float32)


def load_or_distill(model_dir: str | Path, dims: int, cache_dir: str | Path | None = None) -> tuple[np.ndarray, Path, bool]:
    """(token vectors, cache file, whether it was distilled now): distilled once per source model and
    settings, then read from the cache. The cache file is written atomically (temporary file, rename)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"{Path(model_dir).name}-{model_content_key(model_dir, dims)}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False), path, False
        except (OSError, ValueError) as err:
            log.warning("%s: unreadable cached static model (%s); distilling again", path, err)
    tmp: Path | None = None
    try:  # the folder is checked before the work, the file moved into place after it
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = atomic.temp_path(path, ".tmp.npy")
        tmp.touch()
        log.info("distilling a static embedding model from %s: once, under a minute on two cores; cached in %s",
                 model_dir, cache_dir)
        vectors = distill(model_dir, dims)
        np.save(tmp, vectors)
        atomic.commit(tmp, path)
    except (OSError, DeitaError) as err:
        raise DeitaError(f"cannot write the distilled static model to {cache_dir}: {err} (set --cache-path "
                         f"or ${CACHE_ENV} to a writable folder)") from err
    finally:
        if tmp is not None:
            atomic.discard(tmp)
    return vectors, path, True


@dataclass
class StaticEncoding:
    """Embeddings of a batch of texts, and how much of them the `max_length` tokens covered."""

    values: np.ndarray
    truncated: int
    tokens: int
    chars_seen: int
    chars_total: int


class StaticModel:
    """Token vectors and the source model's tokenizer: a text's embedding is the mean of its tokens'."""

    def __init__(self, vectors: np.ndarray, tokenizer_file: str | Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        self.vectors = vectors
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    @classmethod
    def load(cls, model_dir: str | Path, dims: int, max_length: int, cache_dir: str | Path | None = None) -> StaticModel:
        model_dir = Path(model_dir)
        if not (model_dir / "tokenizer.json").exists():
            raise DeitaError(f"{model_dir}: a static model is distilled from a local sentence-transformers folder "
                             "with a tokenizer.json")
        vectors, _, _ = load_or_distill(model_dir, dims, cache_dir)
        return cls(vectors, model_dir / "tokenizer.json", max_length)

    def encode(self, texts: Sequence[str]) -> StaticEncoding:
        limit = self.max_length * CHARS_PER_TOKEN_LIMIT
        clipped = [text[:limit] for text in texts]
        encodings = self.tokenizer.encode_batch(clipped, add_special_tokens=False)
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        truncated = tokens = seen = 0
        for row, (text, encoding) in enumerate(zip(texts, encodings, strict=True)):
            ids = encoding.ids
            if len(ids) > self.max_length or len(text) > limit:
                truncated += 1
                ids = ids[: self.max_length]
                seen += encoding.offsets[len(ids) - 1][1] if ids else 0
            else:
                seen += len(text)
            tokens += len(ids)
            if ids:
                mean = self.vectors[ids].mean(axis=0)
                norm = float(np.linalg.norm(mean))
                out[row] = mean / norm if norm > 0 else mean
        return StaticEncoding(out, truncated, tokens, seen, sum(map(len, texts)))


class StaticEmbedder:
    """The `static` embedder: the mean of distilled token vectors over the first `max_length` tokens of the
    whole conversation (distilled once from a sentence model, the packaged MiniLM by default)."""

    summary: ClassVar[str] = "token vectors distilled once from a sentence model; whole conversations, fast"
    output_dtype: ClassVar[str] = "float32"
    render = staticmethod(render_plain)
    uses: ClassVar[tuple[str, ...]] = ("static_dims", "cache_path")

    @staticmethod
    def default_model() -> str:
        from deita.embedding.sentence import default_sentence_model

        return default_sentence_model()

    def __init__(self, config: EmbedConfig) -> None:
        self.config = config
        self.model = StaticModel.load(config.resolved_model(), config.static_dims, config.max_length,
                                      config.cache_path or None)

    @staticmethod
    def window(config: EmbedConfig) -> str:
        return f"the first --max-length {config.max_length} tokens"

    @staticmethod
    def fingerprint(config: EmbedConfig) -> dict[str, Any]:
        return {"static_dims": config.static_dims, "distill": DISTILL_VERSION}

    def __call__(self, texts: Sequence[str]) -> WorkResult:
        encoded = self.model.encode(texts)
        return WorkResult(encoded.values.astype(self.config.output_dtype()),
                          {"truncated": encoded.truncated, "tokens": encoded.tokens,
                           "chars_seen": encoded.chars_seen, "chars_total": encoded.chars_total})
