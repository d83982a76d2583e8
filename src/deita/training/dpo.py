"""`deita train dpo`: TRL's DPOTrainer on preference pairs, after SFT, with the paper's settings.

deita renders each pair as SFT rendered conversations (Vicuna v1.1 by default) and cuts prompts to
max_prompt_length tokens itself (TRL 1.x has no such option); TRL tokenizes prompt and answers, keeps the
reference model (a frozen copy of --model, or the adapter-free base with --lora) and runs the loop.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deita.data.io import ReadStats
from deita.data.policy import RecordPolicy, given_or_own
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.training.config import DPOConfig
from deita.training.run import (
    LOG_FILE,
    REJECTS_FILE,
    compile_model,
    fingerprint,
    load_model,
    lora_config,
    prepare,
    replace_progress,
    resolved_settings,
    trainer_arguments,
)
from deita.training.sft import begin, finish, global_batch_text, say


def dpo_texts(path: Path, tokenizer: Any, config: DPOConfig, policy: RecordPolicy
              ) -> tuple[dict[str, list[str]], ReadStats, int, str]:
    """(prompt/chosen/rejected texts, read stats, prompts cut, fingerprint) of the good pairs of `path`."""
    from deita.training.data import iter_pairs
    from deita.training.render import PairRenderer

    renderer = PairRenderer(tokenizer, config.template)
    texts: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    stats, cut, digest = ReadStats(), 0, hashlib.sha256()
    for pair in iter_pairs(path, policy, stats):
        prompt, truncated = renderer.fit(pair.turns, pair.system, config.max_prompt_length)
        kept = [*pair.turns[:-1], pair.turns[-1]]
        row = (prompt, renderer.completion(kept, pair.system, pair.chosen),
               renderer.completion(kept, pair.system, pair.rejected))
        for key, text in zip(texts, row, strict=True):
            texts[key].append(text)
        cut += truncated
        digest.update(repr(row).encode())
    return texts, stats, cut, digest.hexdigest()


def run_dpo(pairs: str | Path, output: str | Path, config: DPOConfig, options: RunOptions | None = None,
            callbacks: Sequence[Any] = (), policy: RecordPolicy | None = None) -> Any:
    """DPO of `config.model` (an SFT model folder) on the pairs of `pairs` into `output`; a TrainSummary.

    Resumable like `run_sft`; `policy` as there.
    """
    from deita.training.artifacts import TrainLog, TrainSummary, use_terminal_progress

    options = options or RunOptions()
    pairs, folder, run, tokenizer, started = begin(pairs, output, config, options)
    with given_or_own(policy, options, folder.file(REJECTS_FILE), write=run.main) as policy:
        texts, stats, cut, data_fingerprint = dpo_texts(pairs, tokenizer, config, policy)
        rejects, rejected_kinds = policy.path, policy.by_kind()
    count = len(texts["prompt"])
    if not count:
        raise DeitaError(f"{pairs}: no pair to train on ({stats.records:,} records read, {stats.rejected:,} rejected)")
    state, checkpoint = prepare(folder, fingerprint(config, data_fingerprint, run), config.resume, run)
    if state == "done":
        summary = TrainSummary.from_dict(folder.finished() or {})
        summary.already_done, summary.main = True, run.main
        return summary
    say(f"read {stats.records:,} records: {count:,} pairs, {stats.rejected:,} rejected, {cut:,} prompts cut to "
        f"{config.max_prompt_length} tokens; global batch {global_batch_text(config, run, 'pairs')}", options, run)

    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    terminal = use_terminal_progress(options.quiet)
    log = TrainLog(folder.file(LOG_FILE), None if terminal or options.quiet else sys.stderr,
                   options.progress_interval)
    args = TRLDPOConfig(**trainer_arguments(config, folder.path, run, terminal), beta=config.beta)
    model = load_model(config.model, config, run)
    # The reference: a frozen copy of --model (in bf16 on a GPU: it only runs forward); with --lora, TRL uses the
    # policy with its adapter switched off instead.
    reference = None if config.lora else load_model(config.model, config, run, frozen=True)
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=Dataset.from_dict(texts),
                         processing_class=tokenizer, peft_config=lora_config(config), callbacks=[log, *callbacks])
    replace_progress(trainer, terminal)
    compile_model(trainer, config, run)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.save_model(str(folder.path))
    summary = TrainSummary(
        kind="dpo", output=str(folder.path), model=config.model, template=config.template, examples=count,
        records=stats.records, rejected=stats.rejected,
        rejects=str(rejects) if stats.rejected and rejects else None, rejected_kinds=rejected_kinds,
        truncated=cut, left_out=0, rows=count, steps=trainer.state.global_step,
        epochs=config.epochs if config.max_steps == -1 else round(float(trainer.state.epoch or 0.0), 4),
        global_batch=global_batch_text(config, run, "pairs"),
        first_loss=log.rows[0]["loss"] if log.rows else None, last_loss=log.rows[-1]["loss"] if log.rows else None,
        last_margin=log.rows[-1].get("rewards/margins") if log.rows else None, tokens_per_s=log.mean_rate(),
        seconds=time.perf_counter() - started, resumed_from=checkpoint.name if checkpoint else None, main=run.main,
        resolved=resolved_settings(config, run))
    if run.main:
        finish(folder, tokenizer, config, options, summary, log.rows)
    return summary
