"""The offline preset's quality signals: cheap per-turn checks that need no scorer model and no network.

Each turn gets seven signals, each stored as its own per-turn field, and their product as a quality gate:

- relevance: how the response ranks, by cosine to its instruction under the static embedder (the one the
  offline preset embeds with), among the other responses of its shard: the share of them it beats. A raw cosine
  says little (the static embedder's cosines crowd together); an answer to another question ranks about
  halfway, a real answer near the top;
- overlap: the share of the instruction's content words (four letters or more, not a common function word) that
  the response uses; an answer written for another question shares almost none (the probe's strongest signal
  for that class: a median of 0 against 0.56 for the pool's own answers);
- fluency: the share of the response's word bigrams that the pool holds at least twice (a bigram model of the
  pool, counted in dedup's pass); words out of order score low;
- repetition: the share of distinct word 3-grams in the response; a pasted span repeated scores low;
- refusal: 1 where a short response opens by declining or apologising ("I'm sorry", "as an AI", ...);
- truncation: 1 where the response stops mid-sentence (no closing punctuation, bracket or code fence);
- language: 1 where the question's and the response's language agree (py3langid), else 0.

The gate (`offline_quality_scores`) is 1 for a turn that passes every check and falls towards 0 with each one
it fails; its thresholds were set with `deita probe` on a probe seed and wording not used to check the targets
(docs/offline.md). A response that is empty (an unanswered question) gets 0 everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.records import Record, Turn
from deita.runtime.stage import WorkResult, check_text

SIGNAL_FIELDS = ("relevance_scores", "overlap_scores", "fluency_scores", "repetition_scores", "refusal_scores", "truncation_scores",
                 "language_scores")
QUALITY_FIELD = "offline_quality_scores"
"""The gate: what the offline preset's ranking multiplies the length scores with."""
SIGNALS_VERSION = 1
"""Bumped when a signal or the gate changes, so cached shards are not reused."""
RELEVANCE_TOKENS = 128
"""Tokens of each side the relevance embedding reads (the start of a question or answer says what it is about)."""
LANGUAGE_CHARS = 200
"""Characters of each side the language check reads (sides shorter than 40 characters are not judged, nor pairs
whose both sides are plain ASCII there: most of an English pool, where langid would cost half of the signals'
time; an answer in another language that needs no accent, such as plain-ASCII Indonesian, is missed)."""

RELEVANCE_RANGE = (0.10, 0.50)
"""Relevance at or below the first value gates to the floor, at or above the second to 1 (linear between)."""
OVERLAP_RANGE = (0.04, 0.25)
FLUENCY_RANGE = (0.72, 0.92)
REPETITION_RANGE = (0.70, 0.90)
JUDGED_INSTRUCTION = 10
"""Characters an instruction needs for relevance to be judged ("continue", "and in Go?" say too little): a
shorter one gets relevance 1."""
RANK_SAMPLE = 512
"""Other responses each response is ranked against (a seeded sample of its shard's)."""
FLOOR = 0.05
REFUSAL_FACTOR = 0.05
TRUNCATION_FACTOR = 0.2
LANGUAGE_FACTOR = 0.2

REFUSAL_CHARS = 600
"""A refusal is short: a longer response that opens with an apology usually goes on to answer."""
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry\b|i apologi[sz]e|my apologies|unfortunately|as an ai\b|as a language model|"
    r"i (?:cannot|can ?not|can't|won't|am unable to|am not able to|'m unable to|'m not able to|do not have|don't have))"
    r"|\bas an ai (?:language )?model\b|\bi (?:cannot|can't|am unable to) (?:help|assist|comply|provide|answer)",
    re.IGNORECASE)
_CLOSED = re.compile(r"""([.!?。！？…)\]}"'`*>|:;]|```|\d%?|[\U0001F300-\U0001FAFF])\s*$""")
SHORT_ANSWER = 40
"""Characters below which an answer without closing punctuation counts as complete ("4", "Paris")."""


def linear_gate(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """FLOOR at or below `low`, 1 at or above `high`, linear between."""
    return np.clip((values - low) / (high - low), FLOOR, 1.0)


def quality_gate(signals: np.ndarray) -> np.ndarray:
    """The product of the signals' gates, one per row of `signals` (columns as SIGNAL_FIELDS; NaN: not judged)."""
    relevance, overlap, fluency, repetition, refusal, truncation, language = signals.T
    gate = linear_gate(relevance, *RELEVANCE_RANGE)
    gate *= _unjudged_one(overlap, OVERLAP_RANGE) * _unjudged_one(fluency, FLUENCY_RANGE)
    gate *= linear_gate(repetition, *REPETITION_RANGE)
    gate *= np.where(refusal > 0, REFUSAL_FACTOR, 1.0)
    gate *= np.where(truncation > 0, TRUNCATION_FACTOR, 1.0)
    return gate * np.where(language > 0, 1.0, LANGUAGE_FACTOR)


def _unjudged_one(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return np.where(np.isnan(values), 1.0, linear_gate(np.nan_to_num(values), *bounds))


def relevance_ranks(questions: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Per pair, the mean of two shares: of the other answers less similar to its question than its own
    answer, and of the other questions less similar to its answer than its own question (each against up to
    RANK_SAMPLE others, a fixed sample). An answer written for another question loses both ways: other answers
    fit its question as well, and its own question fits it worse than the one it was written for. 1 where
    there is nothing to compare with."""
    n = len(questions)
    if n < 2:
        return np.ones(n)
    own = (questions * answers).sum(axis=1)
    others = np.random.default_rng(0).permutation(n)[:RANK_SAMPLE + 1]
    return (_share_beaten(questions, answers[others], own, others)
            + _share_beaten(answers, questions[others], own, others)) / 2


def _share_beaten(rows: np.ndarray, against: np.ndarray, own: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Per row i, the share of `against` (rows `others` of the other side) less similar to it than `own[i]`,
    leaving out its own partner."""
    shares = np.empty(len(rows))
    for start in range(0, len(rows), 1024):
        index = np.arange(start, min(start + 1024, len(rows)))
        similarity = rows[index] @ against.T
        beaten = (similarity < own[index, None]).sum(axis=1)
        compared = len(others) - (others[None, :] == index[:, None]).sum(axis=1)
        shares[index] = beaten / np.maximum(compared, 1)
    return shares


COMMON_WORDS = frozenset(
    "this that with from have what which there their about would could should will your they them then than when "
    "where these those into also just like make more most some such only over very been were being does here each "
    "other after before because through while using used want need please write give help tell know".split())
OVERLAP_WORDS = 3
"""Content words an instruction needs for overlap to be judged (fewer: overlap NaN, gated as 1)."""


OVERLAP_CHARS = 4000
"""Characters of each side the overlap reads."""


def content_words(text: str) -> set[str]:
    """The content words of the first OVERLAP_CHARS characters of a text."""
    from deita.dedup.normalize import words

    return {w for w in words(text[:OVERLAP_CHARS]) if len(w) >= 4 and w not in COMMON_WORDS and not w.isdigit()}


def content_overlap(instruction: str, response: str, response_words: list[str] | None = None) -> float:
    """The share of the instruction's content words the response uses; NaN for an instruction with fewer than
    OVERLAP_WORDS of them. `response_words`, where given, are the words of the whole response
    (`normalize.words`), reused when it is no longer than OVERLAP_CHARS; only the instruction's words are
    filtered (a word of the response it shares is a content word)."""
    from deita.dedup.normalize import words

    asked = content_words(instruction)
    if len(asked) < OVERLAP_WORDS:
        return float("nan")
    if response_words is None or len(response) > OVERLAP_CHARS:
        response_words = words(response[:OVERLAP_CHARS])
    return len(asked.intersection(response_words)) / len(asked)


def is_refusal(response: str) -> bool:
    return len(response) <= REFUSAL_CHARS and _REFUSAL.search(response[:200]) is not None


def is_truncated(response: str) -> bool:
    text = response.rstrip()
    return len(text) >= SHORT_ANSWER and _CLOSED.search(text[-8:]) is None


def repetition(words: list[str]) -> float:
    """Distinct word 3-grams over all of them (1 for a text too short to repeat itself)."""
    grams = list(zip(words, words[1:], words[2:], strict=False))
    return len(set(grams)) / len(grams) if len(grams) >= 3 else 1.0


class SignalWorker:
    """Turns → (turns, 7): the six signals and the gate."""

    def __init__(self, model_dir: str, dims: int, cache_dir: str | None, counts_path: Path) -> None:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        from deita.dedup.bigrams import BigramCounts
        from deita.embedding.static import StaticModel

        self.embedder = StaticModel.load(model_dir, dims, RELEVANCE_TOKENS, cache_dir or None)
        self.counts = BigramCounts.load(counts_path)
        self.languages = LanguageIdentifier.from_modelpath(Path(MODEL_DIR) / MODEL_FILE)

    def language_agrees(self, instruction: str, response: str) -> bool:
        """Whether both sides are in one language; True where either side has too few letters to tell."""
        sides = [text[:LANGUAGE_CHARS] for text in (instruction, response)]
        if any(len(text.strip()) < 40 for text in sides) or all(text.isascii() for text in sides):
            return True  # too short to tell, or both in plain ASCII (English, code): langid is not asked
        return self.languages.classify(sides[0])[0] == self.languages.classify(sides[1])[0]

    def __call__(self, turns: Sequence[Turn]) -> WorkResult:
        from deita.dedup.normalize import normalize, words_text

        out = np.zeros((len(turns), len(SIGNAL_FIELDS) + 1), dtype=np.float64)
        answered = [i for i, turn in enumerate(turns) if turn.response.strip()]
        if not answered:
            return WorkResult(out, {"unanswered": len(turns)})
        chosen = [turns[i] for i in answered]
        clip = RELEVANCE_TOKENS * 4  # about RELEVANCE_TOKENS tokens: the tokenizer need not read further
        questions = self.embedder.encode([t.instruction[:clip] for t in chosen]).values
        answers = self.embedder.encode([t.response[:clip] for t in chosen]).values
        signals = np.empty((len(chosen), len(SIGNAL_FIELDS)), dtype=np.float64)
        signals[:, 0] = relevance_ranks(questions, answers)
        signals[[len(t.instruction.strip()) < JUDGED_INSTRUCTION for t in chosen], 0] = 1.0
        spaced = [words_text(normalize(t.response)) for t in chosen]  # normalised once for three signals
        response_words = [text.split() for text in spaced]
        signals[:, 1] = [content_overlap(t.instruction, t.response, w)
                         for t, w in zip(chosen, response_words, strict=True)]
        signals[:, 2] = self.counts.seen_share_of(spaced)
        signals[:, 3] = [repetition(w) for w in response_words]
        signals[:, 4] = [is_refusal(t.response) for t in chosen]
        signals[:, 5] = [is_truncated(t.response) for t in chosen]
        signals[:, 6] = [self.language_agrees(t.instruction, t.response) for t in chosen]
        out[answered, :-1] = np.nan_to_num(signals, nan=1.0)  # fluency of a one-word answer: nothing to judge
        out[answered, -1] = quality_gate(signals)
        return WorkResult(out, {"unanswered": len(turns) - len(answered), "refusals": int(signals[:, 4].sum()),
                                "truncated_responses": int(signals[:, 5].sum()),
                                "language_mismatches": int((signals[:, 6] == 0).sum())})


class SignalStage:
    """The offline quality signals as a scoring stage: it shards, resumes and rejects as the scorers do."""

    name = "signals"

    def __init__(self, model_dir: str, dims: int, cache_dir: str | None, counts_path: Path, counts_key: str) -> None:
        self.model_dir, self.dims, self.cache_dir = model_dir, dims, cache_dir
        self.counts_path, self.counts_key = counts_path, counts_key

    def fingerprint(self) -> dict[str, Any]:
        from deita.embedding.static import DISTILL_VERSION

        return {"stage": "signals", "version": SIGNALS_VERSION, "model": self.model_dir, "dims": self.dims,
                "distill": DISTILL_VERSION, "bigram_counts": self.counts_key}

    def requests(self, record: Record) -> list[Turn]:
        for number, turn in enumerate(record.turns, 1):
            check_text(turn.instruction, f"turn {number}'s instruction")
            check_text(turn.response, f"turn {number}'s response")
        return list(record.turns)

    def load_worker(self) -> SignalWorker:
        return SignalWorker(self.model_dir, self.dims, self.cache_dir, self.counts_path)


def signal_fields(rows: np.ndarray) -> dict[str, list[float]]:
    """A record's per-turn signal fields, and as every turn's quality the gate of its worst answered turn: a
    conversation teaches each of its answers, so one cut-off, off-topic or refused answer spoils it (with the
    sum over turns, a long first answer would otherwise carry a bad last one)."""
    fields = {name: [round(float(v), 6) for v in rows[:, column]] for column, name in enumerate(SIGNAL_FIELDS)}
    answered = rows[:, 3] > 0  # repetition is 0 only for an unanswered turn (its lengths make it count 0 anyway)
    worst = float(rows[answered, -1].min()) if answered.any() else 0.0
    return {**fields, QUALITY_FIELD: [round(worst, 6)] * len(rows)}
