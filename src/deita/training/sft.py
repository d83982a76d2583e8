"""`deita train sft`: supervised fine-tuning on a selection with TRL's SFTTrainer and the paper's recipe.

deita reads, renders and tokenizes the conversations (labels on the answers and their eos only) and hands
TRL the token ids; TRL packs them, runs the loop, checkpoints and saves. See `run.py` for resume.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deita.data.policy import RecordPolicy, given_or_own
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.training import require_training
from deita.training.config import SFTConfig, config_yaml
from deita.training.data import SFTExamples, sft_examples
from deita.training.run import (
    CONFIG_FILE,
    CURVE_FILE,
    LOG_FILE,
    REJECTS_FILE,
    SUMMARY_FILE,
    Launch,
    OutputFolder,
    compile_model,
    fingerprint,
    launch,
    load_model,
    lora_config,
    prepare,
    replace_progress,
    resolved_settings,
    trainer_arguments,
)


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise DeitaError(f"--model {model}: cannot load its tokenizer ({str(err).splitlines()[0]})") from None


def quiet_datasets() -> None:
    """deita prints its own progress; datasets' per-map bars would interleave with it."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def global_batch_text(config: Any, run: Launch, unit: str) -> str:
    processes = f"{run.processes} process{'es' if run.processes > 1 else ''}"
    return (f"{config.global_batch(run.processes):,} {unit} = {config.per_device_batch} × {config.grad_accum} "
            f"× {processes}")


def say(text: str, options: RunOptions, run: Launch) -> None:
    if run.main and not options.quiet:
        print(text, file=sys.stderr, flush=True)


def begin(data: str | Path, output: str | Path, config: Any, options: RunOptions
          ) -> tuple[Path, OutputFolder, Launch, Any, float]:
    """What every training command does first: check the config and the paths, then load the tokenizer.
    Returns (input path, output folder, launch, tokenizer, start time)."""
    require_training()
    config.check_ready()
    data, folder, run = Path(data), OutputFolder(output), launch()
    if not data.exists():
        raise DeitaError(f"{data}: no such file or directory")
    folder.check({"input": data, "--model": config.model}, run.main)
    started = time.perf_counter()
    quiet_datasets()
    return data, folder, run, load_tokenizer(config.model), started


def run_sft(data: str | Path, output: str | Path, config: SFTConfig, options: RunOptions | None = None,
            callbacks: Sequence[Any] = (), policy: RecordPolicy | None = None) -> Any:
    """Train `config.model` on the conversations of `data` into the folder `output`; returns a TrainSummary.

    Rerunning the same call after an interruption resumes from the newest checkpoint in `output`.
    `callbacks` are extra transformers TrainerCallbacks (the Python API's hook). `policy`: what happens to
    bad records (default: `options.on_error`, rejects in OUTDIR/rejects.jsonl written by the main process).
    """
    options = options or RunOptions()
    data, folder, run, tokenizer, started = begin(data, output, config, options)
    with given_or_own(policy, options, folder.file(REJECTS_FILE), write=run.main) as policy:
        examples = sft_examples(data, tokenizer, config.template, config.max_length, options, policy)
        examples.rejects, examples.rejected_kinds = policy.path, policy.by_kind()
    if not examples.input_ids:
        raise DeitaError(f"{data}: no conversation to train on ({examples.records:,} records read, "
                         f"{examples.rejected:,} rejected)")
    return fit("sft", examples, config, options, folder, run, tokenizer, started, callbacks)


def fit(kind: str, examples: SFTExamples, config: SFTConfig, options: RunOptions, folder: OutputFolder, run: Launch,
        tokenizer: Any, started: float, callbacks: Sequence[Any] = (), extra_tokens: int = 0) -> Any:
    """Train on tokenized examples (input ids and labels, -100 where no loss falls) with TRL's SFTTrainer:
    resume or skip a finished run, pack, log, save the model and its artifacts. Shared by `train sft` and
    `train scorer`; `extra_tokens` lets sequences run that many tokens past `config.max_length`."""
    from deita.training.artifacts import TrainLog, TrainSummary, use_terminal_progress

    record = fingerprint(config, examples.fingerprint, run)
    state, checkpoint = prepare(folder, record, config.resume, run)
    if state == "done":
        summary = TrainSummary.from_dict(folder.finished() or {})
        summary.already_done, summary.main = True, run.main
        return summary
    item = "conversations" if kind == "sft" else "examples"
    unit = "rows" if config.packing else item
    say(f"read {examples.records:,} records: {len(examples.input_ids):,} {item}, {examples.tokens:,} tokens "
        f"({examples.trained_tokens:,} trained), {examples.rejected:,} rejected; global batch "
        f"{global_batch_text(config, run, unit)}", options, run)

    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from deita.training.packing import trainer_packing

    dataset = Dataset.from_dict({"input_ids": examples.input_ids, "labels": examples.labels})
    terminal = use_terminal_progress(options.quiet)
    log = TrainLog(folder.file(LOG_FILE), None if terminal or options.quiet else sys.stderr,
                   options.progress_interval)
    arguments = trainer_arguments(config, folder.path, run, terminal)
    arguments["max_length"] += extra_tokens
    args = TRLSFTConfig(**arguments, **trainer_packing(config.packing))
    trainer = SFTTrainer(model=load_model(config.model, config, run), args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=lora_config(config), callbacks=[log, *callbacks])
    replace_progress(trainer, terminal)
    compile_model(trainer, config, run)
    rows = len(trainer.train_dataset)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.save_model(str(folder.path))
    summary = TrainSummary(
        kind=kind, output=str(folder.path), model=config.model, template=config.template,
        examples=len(examples.input_ids), records=examples.records, rejected=examples.rejected,
        rejects=str(examples.rejects) if examples.rejected and examples.rejects else None,
        rejected_kinds=examples.rejected_kinds,
        truncated=examples.truncated, left_out=examples.no_answer_within_max_length, rows=rows,
        steps=trainer.state.global_step, epochs=config.epochs if config.max_steps == -1 else
        round(float(trainer.state.epoch or 0.0), 4),
        global_batch=global_batch_text(config, run, unit),
        first_loss=log.rows[0]["loss"] if log.rows else None, last_loss=log.rows[-1]["loss"] if log.rows else None,
        tokens_per_s=log.mean_rate(), seconds=time.perf_counter() - started,
        resumed_from=checkpoint.name if checkpoint else None, main=run.main,
        resolved=resolved_settings(config, run))
    if run.main:
        finish(folder, tokenizer, config, options, summary, log.rows)
    return summary


def finish(folder: OutputFolder, tokenizer: Any, config: Any, options: RunOptions, summary: Any,
           rows: list[dict[str, Any]]) -> None:
    """After the model is saved: the tokenizer with the chat template that renders what was trained, the
    effective config, the loss curve, the summary (which marks the run finished); then the checkpoints go."""
    from deita.training.artifacts import plot_loss
    from deita.training.render import bos_prefix, vicuna_chat_template

    if config.template == "vicuna":
        tokenizer.chat_template = vicuna_chat_template(with_bos=bool(bos_prefix(tokenizer)))
    tokenizer.save_pretrained(str(folder.path))
    folder.file(CONFIG_FILE).write_text(config_yaml(config, options), encoding="utf-8")
    if rows:
        plot_loss(rows, folder.file(CURVE_FILE), f"deita train {summary.kind}: {Path(config.model).name}")
    folder.write_json(SUMMARY_FILE, summary.to_dict())
    folder.remove_checkpoints()
