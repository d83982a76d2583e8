"""`deita train scorer`: a Deita scorer from EVOL data (`deita rank` output), on the SFT machinery.

Each variant of a RANKED row becomes one example: the scorer prompt exactly as `deita score` builds and
truncates it (no chat template), followed by the digit of its score; the loss falls on the digit only
(`deita.evol.scorer_data`). The rest is `deita train sft`'s recipe and output folder, so
`deita score --model OUTDIR` then scores with it unchanged, its digit ids read from OUTDIR's tokenizer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deita.config import option
from deita.data.policy import RecordPolicy, given_or_own
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.scoring.config import check_score_token_ids
from deita.scoring.templates import SCORE_TYPES
from deita.training.config import SFTConfig
from deita.training.data import SFTExamples
from deita.training.run import REJECTS_FILE
from deita.training.sft import begin, fit


@dataclass(frozen=True)
class ScorerTrainConfig(SFTConfig):
    """`deita train scorer`: the scorer prompt → its score digit, with the SFT recipe otherwise."""

    type: str = option("complexity", "complexity (instruction → score) or quality (instruction and response → "
                       "score); must match the RANKED file.", choices=SCORE_TYPES)
    template: str = option("scorer", "The scorer prompt of `deita score`, no chat template.", cli=False)
    max_length: int = option(2048, "Scorer context: prompts are cut to it inside the text, as `deita score` "
                             "cuts them; the digit comes after.", min=64)
    score_token_ids: tuple[int, ...] | None = option(None, "Six comma-separated token ids for the digits 1..6 "
                                                      "(default: derived from the tokenizer, as `deita score` does).")

    def check(self) -> None:
        super().check()
        check_score_token_ids(self.score_token_ids)


def scorer_training_examples(ranked: Path, tokenizer: Any, config: ScorerTrainConfig,
                             policy: RecordPolicy | None = None) -> SFTExamples:
    from deita.evol.rows import iter_rows
    from deita.evol.scorer_data import ranked_file_examples

    out, digest = SFTExamples(), hashlib.sha256()
    policy = policy or RecordPolicy.failing()
    before = policy.count
    for example in ranked_file_examples(ranked, tokenizer, config.type, config.max_length, config.score_token_ids,
                                        policy=policy):
        out.input_ids.append(example.input_ids)
        out.labels.append(example.labels)
        out.tokens += len(example.input_ids)
        out.trained_tokens += 1
        out.truncated += example.truncated
        digest.update(repr((example.input_ids, example.labels)).encode())
    out.records = sum(1 for _ in iter_rows(ranked))
    out.rejected = policy.count - before
    out.fingerprint = digest.hexdigest()
    return out


def run_scorer(ranked: str | Path, output: str | Path, config: ScorerTrainConfig,
               options: RunOptions | None = None, policy: RecordPolicy | None = None) -> Any:
    """Train `config.model` as a `config.type` scorer on a RANKED file into `output`; returns a TrainSummary.
    `policy`: what happens to bad rows, as in `run_sft`."""
    options = options or RunOptions()
    ranked, folder, run, tokenizer, started = begin(ranked, output, config, options)
    with given_or_own(policy, options, folder.file(REJECTS_FILE), write=run.main) as policy:
        examples = scorer_training_examples(ranked, tokenizer, config, policy)
        examples.rejects, examples.rejected_kinds = policy.path, policy.by_kind()
    if not examples.input_ids:
        raise DeitaError(f"{ranked}: no ranked variants to train on")
    return fit("scorer", examples, config, options, folder, run, tokenizer, started, extra_tokens=1)
