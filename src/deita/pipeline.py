"""The seed toolkit's `Pipeline(name, **options).run()` API, as thin typed layers over the core.

    Pipeline("score_pipeline", data_path="pool.json", scorer="llama",
             scorer_name_or_path="hkust-nlp/deita-complexity-scorer", is_vllm=False,
             score_type="complexity", output_path="scored.json").run()
    Pipeline("embed_pipeline", data_path="scored.json", output_path="emb.npy",
             model_name_or_path="mistralai/Mistral-7B-v0.1", max_length=2048).run()
    Pipeline("filter_pipeline", data_path="scored.json", other_data_path="emb.npy", threshold=0.9,
             data_size=6000, sort_key="complexity_scores,quality_scores", output_path="deita6k.json").run()

Unknown options are errors naming the nearest valid one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.config import Config, config_from_mapping
from deita.embedding.embedder import EmbedConfig
from deita.embedding.run import embed_file
from deita.errors import ConfigError, DeitaError
from deita.runtime.batching import DEFAULT_BATCH_TOKENS
from deita.runtime.runner import RunOptions
from deita.scoring.run import score_file
from deita.scoring.scorer import ScoreConfig
from deita.selection.config import FilterConfig
from deita.selection.run import filter_file

log = logging.getLogger(__name__)


SCORE_OPTION_NAMES = {"type": "score_type", "model": "scorer_name_or_path", "backend": "is_vllm"}
"""ScoreConfig options under the names the seed's score pipeline gives them."""


@dataclass
class ScorePipelineOptions(Config):
    data_path: str
    output_path: str
    scorer_name_or_path: str
    score_type: str = "complexity"
    scorer: str = "llama"
    """llama or mistral: informational; prompts and digit ids come from the model's tokenizer."""
    is_vllm: bool = False
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_length: int = 2048
    device: str = "auto"

    def score_config(self) -> ScoreConfig:
        """The core's config for these options, checked like the CLI's (a bad score_type is an error here)."""
        if self.scorer not in ("llama", "mistral"):
            raise DeitaError(f"scorer must be 'llama' or 'mistral', not '{self.scorer}'")
        try:
            return ScoreConfig(type=self.score_type, model=self.scorer_name_or_path,
                               backend="vllm" if self.is_vllm else "hf", batch_tokens=self.batch_tokens,
                               max_length=self.max_length, device=self.device)
        except ConfigError as err:
            raise err.located("Pipeline('score_pipeline')", lambda name: SCORE_OPTION_NAMES.get(name, name)) from None

    def run(self) -> Any:
        return score_file(self.data_path, self.output_path, self.score_config(), RunOptions(quiet=True))


@dataclass
class EmbedPipelineOptions(Config):
    data_path: str
    output_path: str
    model_name_or_path: str = "mistralai/Mistral-7B-v0.1"
    max_length: int = 2048
    use_flash_attention: bool = False
    """Accepted for compatibility; attention already takes PyTorch's fused causal kernel."""
    batch_size_per_device: int = 1
    """Accepted for compatibility; batches are sized by tokens (`batch_tokens`) instead."""
    conv_template: str = "vicuna_v1.1"
    only_answer: bool = False
    random_shuffle: bool = False
    """Accepted for compatibility; rows always follow the input order."""
    bfloat16: bool = True
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    device: str = "auto"

    def run(self) -> Any:
        if self.conv_template != "vicuna_v1.1":
            raise DeitaError(f"conv_template '{self.conv_template}' is not supported (only vicuna_v1.1)")
        output = Path(self.output_path)
        if output.suffix == ".pkl":
            output = output.with_suffix(".npy")
            log.warning("embeddings are written as a memory-mappable array, not a pickle: %s", output)
        config = EmbedConfig(kind="causal", model=self.model_name_or_path, max_length=self.max_length,
                             only_answer=self.only_answer, device=self.device, batch_tokens=self.batch_tokens,
                             model_dtype="auto" if self.bfloat16 else "float32")
        return embed_file(self.data_path, output, config, RunOptions(quiet=True))


@dataclass
class FilterPipelineOptions(Config):
    data_path: str
    other_data_path: str
    output_path: str
    threshold: float = 0.9
    data_size: int = 6000
    chunk_size: int = 1024
    sort_key: str = "complexity_scores,quality_scores"
    distance_metric: str = "cosine"
    embedding_field: str = "embedding"
    """Accepted for compatibility; embeddings come from the `.npy` in other_data_path."""
    is_compression: bool = False
    """Accepted for compatibility."""
    device: Any = "auto"
    """auto, cpu, cuda, or a GPU index as in the seed (0 → cuda:0)."""

    def run(self) -> Any:
        if self.distance_metric != "cosine":
            raise DeitaError(f"distance_metric '{self.distance_metric}' is not supported (only cosine)")
        embeddings = Path(self.other_data_path)
        if embeddings.suffix == ".pkl" and embeddings.with_suffix(".npy").exists():
            embeddings = embeddings.with_suffix(".npy")
        device = f"cuda:{self.device}" if isinstance(self.device, int) else str(self.device)
        config = FilterConfig(size=self.data_size, threshold=self.threshold, block_size=self.chunk_size,
                              sort_key=tuple(k.strip() for k in self.sort_key.split(",") if k.strip()),
                              device=device)
        return filter_file(self.data_path, self.output_path, config, embeddings)


PIPELINES = {"score_pipeline": ScorePipelineOptions, "embed_pipeline": EmbedPipelineOptions,
             "filter_pipeline": FilterPipelineOptions}


class Pipeline:
    """`Pipeline(name, **options)`; `.run()` does the work and returns the stage's report."""

    def __init__(self, name: str, **options: Any) -> None:
        if name not in PIPELINES:
            raise DeitaError(f"unknown pipeline '{name}' (choose {', '.join(PIPELINES)})")
        self.options = config_from_mapping(PIPELINES[name], options, f"Pipeline('{name}')")

    def run(self) -> Any:
        return self.options.run()
