"""What training reads: SFT conversations from any deita input, and DPO preference pairs.

SFT reads records through `deita.data.io.iter_records`, so `deita select`'s output trains directly and
turns are formed by role; a record with no assistant answer is a bad record like any other (the run's
`RecordPolicy`).

A DPO pair file is UltraFeedback-binarized style: `prompt` (a string or a list of messages) and `chosen`
and `rejected`, each the answer as a string or a list of messages ending in the answer (UltraFeedback's
lists repeat the prompt before it). Pairs whose answers are equal or empty are bad records, with the reason.
"""

# ruff: noqa: TRY004  (problems are ValueError by contract, as in deita.data.formats)
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deita.data.formats import json_type, parse_turns
from deita.data.io import ReadStats, RecordPolicy, iter_records
from deita.data.policy import rejected_line, rejects_path_for
from deita.data.readers import read_items
from deita.data.records import Turn
from deita.errors import DeitaError
from deita.runtime.options import RunOptions
from deita.training.render import (
    Example,
    Rendered,
    answered,
    messages_of,
    render_vicuna,
    render_with_template,
)
from deita.training.render import tokenize as tokenize_rendered

NO_ANSWER = "no assistant answer: nothing to train on"


@dataclass
class SFTExamples:
    """Tokenized conversations and what reading them found; `fingerprint` identifies the exact token data."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    records: int = 0
    rejected: int = 0
    truncated: int = 0
    no_answer_within_max_length: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    fingerprint: str = ""
    rejects: Path | None = None
    """The rejects file the bad records went to (None: none written)."""
    rejected_kinds: str = ""
    """The rejects counted by kind ("1 parse, 1 empty")."""


def sft_examples(path: str | Path, tokenizer: Any, template: str, max_length: int, options: RunOptions,
                 policy: RecordPolicy | None = None, on_record: Callable[[], None] | None = None) -> SFTExamples:
    """Read, render and tokenize every conversation of `path` (one record in memory at a time); bad records
    go to `policy` (default: the first one stops the read)."""
    from deita.training.render import bos_prefix, eos_token

    stats = ReadStats()
    policy = policy or RecordPolicy.failing()
    before = policy.count
    bos, eos = (bos_prefix(tokenizer), eos_token(tokenizer)) if template == "vicuna" else ("", "")

    def render(record: Any) -> Rendered:
        if template == "vicuna":
            return render_vicuna(record.turns, bos, eos)
        return render_with_template(tokenizer, messages_of(record.turns, record.system))

    out, digest = SFTExamples(), hashlib.sha256()
    for record in iter_records(path, fmt=options.format, policy=policy, pairing=options.pairing, stats=stats):
        if on_record is not None:
            on_record()
        if not any(turn.response for turn in answered(record.turns)):
            policy.reject(path, record.index, record.location, NO_ANSWER, record.raw, kind="empty")
            continue
        try:
            example: Example = tokenize_rendered(tokenizer, render(record), max_length)
        except ValueError as err:
            policy.reject(path, record.index, record.location, str(err), record.raw, kind="tokenizer")
            continue
        if not example.trained_tokens:
            out.no_answer_within_max_length += 1
            continue
        out.truncated += example.truncated
        out.input_ids.append(example.input_ids)
        out.labels.append(example.labels)
        out.tokens += len(example.input_ids)
        out.trained_tokens += example.trained_tokens
        digest.update(repr((example.input_ids, example.labels)).encode())
    out.records, out.rejected = stats.records, policy.count - before
    out.fingerprint = digest.hexdigest()
    return out


# ---------------------------------------------------------------- DPO pairs


@dataclass(frozen=True)
class Pair:
    """One preference pair: the prompt as turns (the last one unanswered), and the two answers."""

    index: int
    location: str
    raw: dict
    turns: list[Turn]
    system: str | None
    chosen: str
    rejected: str


def _message(value: Any, where: str) -> dict[str, str]:
    """A message in ShareGPT keys (which accept every role alias), from role/content or from/value keys."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} is {json_type(value)}, expected an object with role and content")
    for role_key, text_key in (("role", "content"), ("from", "value")):
        if role_key in value and text_key in value:
            return {"from": value[role_key], "value": value[text_key]}
    raise ValueError(f"{where} has neither role/content nor from/value")


def _messages(value: Any, name: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError(f"'{name}' is {json_type(value)}, expected a string or a list of messages")
    if not value:
        raise ValueError(f"'{name}' is an empty list")
    return [_message(m, f"'{name}' message {n}") for n, m in enumerate(value, 1)]


def _answer(raw: dict, name: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """(the conversation before the answer, the answer message) of `chosen` or `rejected`."""
    if name not in raw:
        raise ValueError(f"missing '{name}' (a pair holds 'prompt', 'chosen' and 'rejected')")
    value = raw[name]
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"'{name}' is empty")
        return [], {"from": "assistant", "value": value}
    messages = _messages(value, name)
    answer = messages[-1]
    if isinstance(answer["value"], str) and not answer["value"].strip():
        raise ValueError(f"'{name}' ends with an empty answer")
    try:  # the last message's role, with every alias the readers accept
        is_answer = bool(parse_turns({"conversations": [{"from": "user", "value": "?"}, answer]}, "sharegpt")[0][0].response)
    except ValueError:
        is_answer = False
    if not is_answer:
        raise ValueError(f"'{name}' does not end with the assistant's answer")
    return messages[:-1], answer


def _prompt(raw: dict) -> list[dict[str, str]]:
    value = raw.get("prompt")
    if value is None:
        return []
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("'prompt' is empty")
        return [{"from": "user", "value": value}]
    return _messages(value, "prompt")


def _turns(messages: list[dict[str, str]], name: str) -> tuple[list[Turn], str | None]:
    try:
        turns, system, _ = parse_turns({"conversations": messages}, "sharegpt")
    except ValueError as err:
        raise ValueError(f"'{name}': {err}") from None
    if not turns[-1].response:
        raise ValueError(f"'{name}' does not end with the assistant's answer")
    return turns, system


def parse_pair(raw: Any) -> tuple[list[Turn], str | None, str, str]:
    """(prompt turns, system message, chosen answer, rejected answer) of a raw pair, or ValueError(problem)."""
    if not isinstance(raw, dict):
        raise ValueError(f"the record is {json_type(raw)}, expected an object")
    before_chosen, chosen = _answer(raw, "chosen")
    before_rejected, rejected = _answer(raw, "rejected")
    if before_chosen and before_rejected and before_chosen != before_rejected:
        raise ValueError("'chosen' and 'rejected' answer different conversations")
    conversation = before_chosen or before_rejected or _prompt(raw)
    if not conversation:
        raise ValueError("no prompt: give 'prompt', or 'chosen'/'rejected' as messages ending in the answer")
    chosen_turns, system = _turns(conversation + [chosen], "chosen")
    rejected_turns, _ = _turns(conversation + [rejected], "rejected")
    chosen_text, rejected_text = chosen_turns[-1].response, rejected_turns[-1].response
    if chosen_text.strip() == rejected_text.strip():
        raise ValueError("'chosen' and 'rejected' are the same answer")
    prompt = [*chosen_turns[:-1], Turn(chosen_turns[-1].instruction, "")]
    return prompt, system, chosen_text, rejected_text


def iter_pairs(path: str | Path, policy: RecordPolicy | None = None, stats: ReadStats | None = None
               ) -> Iterator[Pair]:
    """Stream the good pairs of a file; bad ones go to `policy` (default: the first one stops the read)."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    policy = policy or RecordPolicy.failing()
    if not path.exists():
        raise DeitaError(f"{path}: no such file or directory")
    for index, location, raw, problem in read_items(path, stats):
        stats.records += 1
        if problem is None:
            try:
                turns, system, chosen, rejected = parse_pair(raw)
            except ValueError as err:
                problem = str(err)
        if problem is not None:
            stats.rejected += 1
            policy.reject(path, index, location, problem, raw)
            continue
        yield Pair(index, location, raw, turns, system, chosen, rejected)


@dataclass
class SampleSummary:
    """What `deita dpo-data` did: records read = good + rejected; `written` of the good ones sampled."""

    records: int
    rejected: int
    written: int
    output: Path
    rejects: Path | None
    rejected_kinds: str = ""
    """The rejects counted by kind ("2 schema, 1 empty")."""

    def lines(self) -> list[str]:
        return [f"sampled {self.written:,} of {self.records - self.rejected:,} good pairs "
                f"({self.records:,} records read) → {self.output}",
                *rejected_line(self.rejected, self.rejected_kinds, self.rejects)]


def sample_pairs(path: str | Path, output: str | Path, size: int, seed: int,
                 policy: RecordPolicy | None = None) -> SampleSummary:
    """The paper's DPO data: `size` pairs (-1: all) sampled with `seed`, written unchanged in sampled order.

    The sample is what `datasets`' `Dataset.shuffle(seed=seed).select(range(size))` takes from the whole file
    (numpy's `default_rng(seed).permutation` over every record), which is how the 10K UltraFeedback pairs
    were drawn; bad pairs go to `policy` (default: the first one stops the run). Two streaming passes: only
    the sampled records are held.
    """
    import numpy as np

    from deita.data.io import write_records

    path = Path(path)
    stats = ReadStats(reread=True)
    policy = policy or RecordPolicy.failing(rejects_path_for(output))
    good = {pair.index for pair in iter_pairs(path, policy, stats)}
    order = np.random.default_rng(seed).permutation(stats.records)
    sampled = [int(i) for i in order if int(i) in good]
    sampled = sampled if size == -1 else sampled[:size]
    position = {index: k for k, index in enumerate(sampled)}
    kept: list[Any] = [None] * len(sampled)
    for index, _location, raw, _problem in read_items(path, stats.again()):
        if index in position:
            kept[position[index]] = raw
    written = write_records(output, kept)
    return SampleSummary(stats.records, stats.rejected, written, Path(output), policy.path, policy.by_kind())
