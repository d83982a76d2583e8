"""Decontamination: find pool texts that hold an evaluation prompt, by shared word n-grams (the 13-gram test
of GPT-3 and NeMo Curator) and, optionally, by embedding cosine (paraphrases).

Eval files are read with deita's own readers, so any file type works (JSON, JSONL, parquet, a saved
dataset). A row that is a deita record (ShareGPT, Alpaca, chat messages) gives one eval prompt per
instruction; other rows give theirs from `prompt`, `instruction`, `question` or `turns` (a list of strings,
as in MT-Bench's question.jsonl).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deita.data.io import RecordPolicy, iter_records
from deita.data.policy import Reject
from deita.dedup.minhash import ngram_hashes, word_hashes
from deita.dedup.normalize import normalize, words_text
from deita.errors import DeitaError

PROMPT_FIELDS = ("prompt", "instruction", "question", "turns")
ID_FIELDS = ("question_id", "id", "key", "task_id")


@dataclass(frozen=True)
class EvalItem:
    """One eval prompt and where it comes from."""

    source: str  # the eval file
    location: str  # "line 3", "index 4"
    id: Any  # question_id / id of the row, if it has one
    turn: int  # 1-based prompt number within the row (MT-Bench's second turn: 2)
    text: str

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.source, "location": self.location}
        if self.id is not None:
            out["id"] = self.id
        out["turn"] = self.turn
        out["prompt"] = self.text if len(self.text) <= 300 else self.text[:297] + "..."
        return out


def _row_id(row: dict) -> Any:
    for key in ID_FIELDS:
        value = row.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
    return None


def _plain_prompts(row: Any) -> list[str] | None:
    """The prompts of a plain eval row, or None when it has none of the prompt fields."""
    if not isinstance(row, dict):
        return None
    turns = row.get("turns")
    if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns):
        return [t for t in turns if t.strip()] or None
    for key in ("prompt", "question", "instruction"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return [value]
    return None


class _PlainRows:
    """Sees the rows deita's reader does not take as records (a policy's `on_reject`): plain eval rows are
    read here; anything else is an error naming the file, the row and the problem."""

    def __init__(self, path: Path, items: list[tuple[int, EvalItem]]) -> None:
        self.path, self.items = path, items

    def __call__(self, reject: Reject) -> None:
        prompts = _plain_prompts(reject.record)
        if prompts is None:
            raise DeitaError(f"{self.path}, {reject.location}: not an eval prompt ({reject.reason}); an eval row "
                             f"is a deita record or has one of the fields {', '.join(PROMPT_FIELDS)}")
        row_id = _row_id(reject.record)
        for turn, text in enumerate(prompts, 1):
            self.items.append((reject.index, EvalItem(str(self.path), reject.location, row_id, turn, text)))


def read_eval_items(paths: Sequence[str | Path]) -> list[EvalItem]:
    """Every eval prompt of the files, in file and row order."""
    items: list[EvalItem] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise DeitaError(f"eval set {path}: no such file or directory")
        found: list[tuple[int, EvalItem]] = []
        plain = RecordPolicy(True, None, write=False, on_reject=_PlainRows(path, found))
        for record in iter_records(path, policy=plain):
            row_id = _row_id(record.raw)
            for turn, pair in enumerate(record.turns, 1):
                found.append((record.index, EvalItem(str(path), record.location, row_id, turn, pair.instruction)))
        if not found:
            raise DeitaError(f"--against {path}: no eval prompts in the file")
        items += [item for _, item in sorted(found, key=lambda pair: pair[0])]
    return items


@dataclass(frozen=True)
class NgramHit:
    """A checked text that shares a run of words with an eval prompt."""

    unit: int  # which of the checked texts
    item: int  # which eval prompt
    ngram: str  # the shared words


class NgramIndex:
    """Hashes of every `n`-word run of every eval prompt; a prompt shorter than `n` words but of at least
    `min_words` is one run, matched whole. Lookups are numpy `searchsorted` over sorted uint64 arrays,
    and every hit is confirmed on the words themselves, so a hash collision never removes a record."""

    def __init__(self, items: Sequence[EvalItem], n: int, min_words: int) -> None:
        self.n, self.min_words = n, min_words
        texts = [words_text(normalize(item.text)) for item in items]
        self.words = [" " + text.strip() + " " for text in (" ".join(t.split()) for t in texts)]
        word_sets = word_hashes(texts)
        counts = np.diff(word_sets.offsets)
        self.unchecked = int((counts < min_words).sum())
        grams = ngram_hashes(word_sets, n, whole_below=min_words)
        item_of = np.repeat(np.arange(len(items)), np.diff(grams.offsets))
        self.tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for length in sorted(set(grams.lengths.tolist()), reverse=True):
            chosen = grams.lengths == length
            values, first = np.unique(grams.hashes[chosen], return_index=True)
            self.tables[int(length)] = (values, item_of[chosen][first])

    @property
    def prompts(self) -> int:
        return len(self.words)

    def find(self, texts: Sequence[str]) -> dict[int, NgramHit]:
        """The first confirmed hit of each text that has one; texts come from `normalize.words_text`."""
        found: dict[int, NgramHit] = {}
        if not self.tables or not texts:
            return found
        word_sets = word_hashes(texts)
        split: dict[int, list[str]] = {}
        for length, (values, items) in self.tables.items():
            grams = ngram_hashes(word_sets, length, whole_below=length)
            if not len(grams.hashes):
                continue
            where = np.minimum(np.searchsorted(values, grams.hashes), len(values) - 1)
            hits = np.flatnonzero(values[where] == grams.hashes)
            if not len(hits):
                continue
            units = np.searchsorted(grams.offsets, hits, side="right") - 1
            for hit, unit in zip(hits.tolist(), units.tolist(), strict=True):
                if unit in found:
                    continue
                words = split.setdefault(unit, texts[unit].split())
                start = int(grams.first_word[hit] - word_sets.offsets[unit])
                run = " ".join(words[start:start + length])
                item = int(items[where[hit]])
                if f" {run} " in self.words[item]:
                    found[unit] = NgramHit(unit, item, run)
        return found


class EmbeddingIndex:
    """Unit-length embeddings of the eval prompts; `best` gives each text's most similar prompt and cosine."""

    def __init__(self, items: Sequence[EvalItem], embed: Any) -> None:
        from deita.embedding.embedder import EmbedStage

        self.config = embed
        self.worker = EmbedStage(embed).load_worker()
        self.vectors = self.encode([item.text for item in items])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        values = np.asarray(self.worker(list(texts)).values, dtype=np.float32)
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        return values / np.maximum(norms, 1e-12)

    def best(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(index of the most similar eval prompt, its cosine) for each text."""
        if not texts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        similarity = self.encode(texts) @ self.vectors.T
        best = similarity.argmax(axis=1)
        return best, similarity[np.arange(len(texts)), best]
