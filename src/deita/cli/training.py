"""Training commands: train sft|dpo|scorer, dpo-data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from deita.errors import ConfigError

from .flags import CONTEXT, INPUT, OUTPUT, build_config, command, config_flags, flag_label, read_option_flags
from .outputs import cleaning_policy, command_policy, echo_lines


def _train_command(kind: str) -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.training.config import READ_OPTIONS, DPOConfig, SFTConfig, config_layers
    from deita.training.scorer import ScorerTrainConfig

    cls = {"sft": SFTConfig, "dpo": DPOConfig, "scorer": ScorerTrainConfig}[kind]
    train_flags = config_flags(cls)
    read_flags = config_flags(RunOptions, exclude=tuple(f.name for f in dataclasses.fields(RunOptions)
                                                        if f.name not in READ_OPTIONS))
    config_file = click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                               help="YAML with the options (keys as the flags, read options under run:); flags "
                                    "override it. OUTDIR/train_config.yaml has this shape.")
    outdir = click.Option(["-o", "--output", "output"], type=click.Path(path_type=Path), required=True,
                          help="Output folder: the trained model and tokenizer, logs, checkpoints while training.")

    def run(input: Path, output: Path, config_file: Path | None, **values: Any) -> None:
        file_layer, run_layer = config_layers(config_file) if config_file is not None else (None, None)
        config = build_config(cls, train_flags, values, layers=(file_layer,) if file_layer else ())
        options = build_config(RunOptions, read_flags, values, layers=(run_layer,) if run_layer else ())
        try:
            config.check_ready()
        except ConfigError as err:
            raise err.located(label=flag_label(train_flags)) from None
        if kind == "sft":
            from deita.training.sft import run_sft as train
        elif kind == "dpo":
            from deita.training.dpo import run_dpo as train
        else:
            from deita.training.scorer import run_scorer as train
        from deita.training.run import REJECTS_FILE, is_main_process

        with command_policy(options, output / REJECTS_FILE, write=is_main_process()) as policy:
            echo_lines(train(input, output, config, options, policy=policy).lines())

    help = {"sft": "Supervised fine-tuning on DATA (any file deita reads, e.g. `deita select`'s output) with the "
                   "paper's recipe: Vicuna v1.1, loss on the answers only, packed rows, lr 2e-5 cosine, 6 epochs."
                   "\n\nRerun the same command after an interruption to resume from the last checkpoint. Several "
                   "GPUs: the same command under `accelerate launch` (see docs/training.md).\n\nExample: deita "
                   "train sft selected.jsonl -o out/sft --model mistralai/Mistral-7B-v0.1",
            "dpo": "DPO on PAIRS (prompt, chosen, rejected) after SFT, with the paper's settings: beta 0.1, lr 5e-7 "
                   "linear, prompts cut to 512 tokens; the reference is a frozen copy of --model.\n\nExample: "
                   "deita train dpo pairs.jsonl -o out/dpo --model out/sft",
            "scorer": "Train a Deita scorer on RANKED (from `deita rank`): the scorer prompt exactly as `deita "
                      "score` builds it, then the score digit; the loss falls on the digit only, the SFT recipe "
                      "otherwise. Then: deita score --model OUTDIR.\n\nExample: deita train scorer ranked.jsonl "
                      "-o out/complexity-scorer --model meta-llama/Llama-3.2-1B --type complexity"}[kind]
    return command(kind, help, [INPUT, outdir, config_file], run, (train_flags, read_flags))


def train_command() -> click.Command:
    return click.Group("train", commands={kind: _train_command(kind) for kind in ("sft", "dpo", "scorer")},
                       context_settings=CONTEXT, help="Train on the selection: `sft`, then `dpo`; or grow your own "
                       "scorer from EVOL data: `scorer` (needs the train extra: pip install -e '.[train]').")


def dpo_data_command() -> click.Command:
    from deita.runtime.options import RunOptions
    from deita.training.config import DPODataConfig

    sample_flags, read_flags = config_flags(DPODataConfig), read_option_flags(exclude=("format", "pairing"))

    def run(input: Path, output: Path, **values: Any) -> None:
        from deita.training.data import sample_pairs

        config = build_config(DPODataConfig, sample_flags, values)
        options = build_config(RunOptions, read_flags, values)
        with cleaning_policy(input, output, options, {}, {}) as policy:
            echo_lines(sample_pairs(input, output, config.size, config.seed, policy).lines())

    return command("dpo-data", "Sample DPO pairs the way the paper did (10K with seed 42) from a local "
                   "UltraFeedback-binarized style file (prompt, chosen, rejected).\n\nExample: deita dpo-data "
                   "train_prefs.parquet -o pairs.jsonl --size 10000 --seed 42", [INPUT, OUTPUT], run,
                   (sample_flags, read_flags))
