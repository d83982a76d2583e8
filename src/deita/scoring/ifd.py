"""IFD, instruction-following difficulty (Cherry LLM; Superfiltering): how much the instruction helps a causal LM
predict the response.

IFD = exp(L_cond) / exp(L_plain) on raw text, no chat template:
- L_cond: mean negative log-likelihood of the response tokens `tok(response, add_special_tokens=False)` after
  the prefix `tok(instruction, add_special_tokens=True)`;
- L_plain: the same mean after only the BOS token (`tokenizer.bos_token_id`).
Where a term has no prefix token at all (no BOS; or an instruction that tokenizes to nothing, without special
tokens), the first response token has nothing to be predicted from, so both terms average over response tokens
2..n; a one-token response then has nothing left to score.

A turn with an empty response, or nothing left to score, has no IFD: `None` in `ifd_scores`, counted. A turn
longer than the context loses its instruction from the left first (the part nearest the response stays), keeping
the instruction's special tokens, then its response from the right; both terms score the same response tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deita.data.records import Turn
from deita.errors import DeitaError
from deita.runtime.stage import WorkResult
from deita.scoring.backends.base import ScoringBackend, TokenSpan
from deita.scoring.prompts import MAX_CHARS_PER_TOKEN

IFD_FIELD = "ifd_scores"
IFD_DEFINITION = ("ifd-1: exp(mean NLL of tok(response, no specials) after tok(instruction, specials)) / "
                  "exp(same after BOS only); no BOS: tokens 2..n in both; cut instruction left, then response right")
"""Part of the cache key: a change to the definition above must change this text."""


@dataclass(frozen=True)
class IFDRequest:
    """One turn's two sequences, scored over the same response tokens."""

    conditioned: TokenSpan
    plain: TokenSpan
    instruction_cut: bool
    response_cut: bool


@dataclass(frozen=True)
class Unscored:
    """Why a turn has no IFD."""

    reason: str
    """`empty_response` or `too_short` (one response token and no prefix to predict it from)."""


def ifd_requests(tokenizer, turns: Sequence[Turn], max_length: int) -> list[IFDRequest | Unscored]:
    """Each turn's conditioned and plain sequences, at most `max_length` tokens each (see the module doc).

    Texts are clipped to what `max_length` tokens can cover before tokenizing (the instruction keeps its end,
    the response its start), so a huge message costs a bounded tokenizer call.
    """
    limit = max_length * MAX_CHARS_PER_TOKEN
    instructions = [t.instruction[-limit:] for t in turns]
    responses = [t.response[:limit] for t in turns]
    prefixes = tokenizer(instructions)["input_ids"] if turns else []
    answers = tokenizer(responses, add_special_tokens=False)["input_ids"] if turns else []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    requests: list[IFDRequest | Unscored] = []
    for turn, instruction, prefix, response in zip(turns, instructions, prefixes, answers, strict=True):
        if not response:
            requests.append(Unscored("empty_response"))
            continue
        prefix, response = list(prefix), list(response)
        instruction_cut, response_cut = len(turn.instruction) > limit, len(turn.response) > limit
        if max(len(prefix), len(bos)) + len(response) > max_length:
            prefix, response, response_trimmed = _fit(tokenizer, instruction, prefix, response, len(bos), max_length)
            instruction_cut, response_cut = True, response_cut or response_trimmed
        skip = 0 if prefix and bos else 1
        if len(response) <= skip:
            requests.append(Unscored("too_short"))
            continue
        requests.append(IFDRequest(TokenSpan(prefix + response, len(prefix) + skip),
                                   TokenSpan(bos + response, len(bos) + skip), instruction_cut, response_cut))
    return requests


def _fit(tokenizer, instruction: str, prefix: list[int], response: list[int], plain_prefix: int,
         max_length: int) -> tuple[list[int], list[int], bool]:
    """(prefix, response, whether the response was cut) within `max_length`: the instruction's text tokens go
    from the left first, its special tokens stay; then the response loses its end."""
    body = tokenizer(instruction, add_special_tokens=False)["input_ids"]
    head = _find(prefix, body)
    if head is None:
        raise DeitaError("cannot tell the tokenizer's special tokens from an instruction's text tokens, so the "
                         "instruction cannot be cut to --max-length; raise --max-length")
    specials_before, specials_after = prefix[:head], prefix[head + len(body):]
    specials = len(specials_before) + len(specials_after)
    room_for_response = max_length - max(specials, plain_prefix)
    if room_for_response < 2:
        raise DeitaError(f"--max-length {max_length} leaves no room for a response after the special tokens")
    if len(response) > room_for_response:
        return specials_before + specials_after, response[:room_for_response], True
    keep = max_length - specials - len(response)
    kept = body[len(body) - keep:] if keep > 0 else []
    return specials_before + kept + specials_after, response, False


def _find(sequence: list[int], part: list[int]) -> int | None:
    """Where `part` starts in `sequence` (the first match), or None."""
    for start in range(len(sequence) - len(part) + 1):
        if sequence[start : start + len(part)] == part:
            return start
    return None


class IFDWorker:
    """Turns → IFD values (NaN where a turn has none) with a loaded backend that answers `span_nll`."""

    def __init__(self, backend: ScoringBackend, max_length: int) -> None:
        self.backend = backend
        self.max_length = max_length

    def __call__(self, turns: Sequence[Turn]) -> WorkResult:
        requests = ifd_requests(self.backend.tokenizer, turns, self.max_length)
        scored = [i for i, r in enumerate(requests) if isinstance(r, IFDRequest)]
        live = [requests[i] for i in scored]
        values = np.full(len(turns), np.nan)
        if live:
            nll = np.asarray(self.backend.span_nll([r.conditioned for r in live] + [r.plain for r in live]),
                             dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(nll))
            if len(bad):
                turn = scored[int(bad[0]) % len(live)]
                raise DeitaError(f"turn {turn} of this shard: the model gave a non-finite log-likelihood "
                                 f"({nll[bad[0]]}); run it in float32 (--dtype float32)")
            values[scored] = np.exp(nll[: len(live)] - nll[len(live):])
        counters = {
            "truncated": sum(r.instruction_cut for r in live),
            "responses_cut": sum(r.response_cut for r in live),
            "empty_responses": sum(isinstance(r, Unscored) and r.reason == "empty_response" for r in requests),
            "too_short": sum(isinstance(r, Unscored) and r.reason == "too_short" for r in requests),
        }
        return WorkResult(values, counters)

    def score(self, turns: Sequence[Turn]) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in self(turns).values]
