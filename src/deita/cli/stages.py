"""Stage commands: score, embed (resumable, sharded, on one process or Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deita.errors import DeitaError

from .flags import INPUT, OUTPUT, build_config, command, config_flags, run_option_flags
from .outputs import checked_stage, echo_lines


def score_command() -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.scoring.config import ScoreConfig

    score_flags, run_flags = config_flags(ScoreConfig), run_option_flags()

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.scoring.run import score_file

        config = build_config(ScoreConfig, score_flags, values)
        options = build_config(RunOptions, run_flags, values)
        with checked_stage(input, output, options) as policy:
            echo_lines(score_file(input, output, config, options, policy=policy).lines())

    return command("score", "Score every turn with a Deita scorer; adds complexity_scores or quality_scores to "
                   "each record.\n\nResumable: rerun the same command after an interruption and finished shards "
                   "are reused.\n\nExample: deita score data.json -o scored.json --type quality",
                   [INPUT, OUTPUT], run, (score_flags, run_flags))


def embed_command() -> click.Command:
    from deita.embedding.embedder import EmbedConfig
    from deita.runtime.options import RunOptions

    embed_flags, run_flags = config_flags(EmbedConfig), run_option_flags()

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.embedding.run import embed_file

        config = build_config(EmbedConfig, embed_flags, values)
        options = build_config(RunOptions, run_flags, values)
        if output.suffix != ".npy":
            raise DeitaError(f"{output}: embeddings are written as a .npy array; give a path ending in .npy")
        with checked_stage(input, output, options) as policy:
            echo_lines(embed_file(input, output, config, options, policy=policy).lines())

    return command("embed", "Embed every conversation into a memory-mappable .npy for the diversity filter. "
                   "Resumable.\n\nExample: deita embed scored.json -o emb.npy --kind causal --model "
                   "mistralai/Mistral-7B-v0.1", [INPUT, OUTPUT], run, (embed_flags, run_flags))
