"""The service's models, loaded once from a `select` config, run one merged batch at a time.

The scorers and the embedder are the very stages `deita select` runs (`ScoreStage`, `LengthStage`,
`EmbedStage`) with their workers, so a record gets the values `deita score` and `deita embed` write for it:
every turn of a batch goes through one worker call, which the prefill engine splits into length-sorted
token-budget batches. A batch that fails is retried record by record, so one record the engine cannot take
costs only its own slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deita.data.records import Record
from deita.embedding.embedder import CausalEmbedder, EmbedStage, SentenceEmbedder, StaticEmbedder
from deita.errors import DeitaError
from deita.runtime.stage import RecordProblem, Stage, Worker
from deita.scoring.lengths import LengthStage, length_fields
from deita.scoring.prompts import clip
from deita.scoring.scorer import ScoreStage
from deita.scoring.templates import SCORE_FIELDS
from deita.selection.scores import DEFAULT_SCORE_KEYS, LENGTH_SCORE_KEYS, final_scores
from deita.serve.records import RecordFailure
from deita.workflow import SelectConfig

log = logging.getLogger(__name__)

Columns = dict[str, list[float]]
"""Per-turn score lists of one record by field name (`complexity_scores`, `instruction_lengths`, …)."""


def score_keys(config: SelectConfig) -> tuple[str, ...]:
    """The per-turn fields whose turn products make the record score, as `deita filter` resolves them."""
    if config.filter.sort_key:
        return config.filter.sort_key
    return LENGTH_SCORE_KEYS if config.preset == "offline" else DEFAULT_SCORE_KEYS


def aggregation(config: SelectConfig) -> str:
    """How per-turn products fold into the record score (the run's `--aggregate`): the name shown beside every
    score."""
    return config.filter.aggregate


def record_scores(per_key_lists: Sequence[Sequence[Any]], keys: Sequence[str], config: SelectConfig) -> np.ndarray:
    """Each record's score from its per-turn lists (`per_key_lists[k][i]`: record i's list for `keys[k]`): the
    one place the service makes it, for request records and for the loaded pool alike."""
    return final_scores(per_key_lists, keys, aggregate=config.filter.aggregate)


@dataclass
class Scorer:
    """A scoring stage, its loaded worker, and how its rows become named per-turn columns."""

    stage: Stage
    worker: Worker
    columns: Callable[[np.ndarray], Columns]


def load_scorers(config: SelectConfig) -> list[Scorer]:
    """The scorers of the config: length scores for the offline preset, else the complexity and quality LLMs."""
    if config.preset == "offline":
        stage = LengthStage()
        return [Scorer(stage, stage.load_worker(), length_fields)]
    scorers = []
    for section in (config.complexity, config.quality):
        stage, name = ScoreStage(section), SCORE_FIELDS[section.type]
        scorers.append(Scorer(stage, stage.load_worker(), lambda rows, name=name: {name: [float(v) for v in rows]}))
    return scorers


@dataclass
class Job:
    """One slot of a request for the engine: a record's turns to score and/or one text to embed."""

    record: Record | None = None
    text: str | None = None
    score: bool = False
    neighbors: int = 0


@dataclass
class JobResult:
    """What the engine made of one job, or why it could not."""

    columns: Columns = field(default_factory=dict)
    vector: np.ndarray | None = None
    tokens: int = 0
    failure: RecordFailure | None = None
    extra: Any = None


class Engine:
    """Scorers and embedder of one `SelectConfig`, loaded once; not thread-safe: one batch at a time."""

    def __init__(self, config: SelectConfig) -> None:
        self.config = config
        self.keys = score_keys(config)
        self.scorers = load_scorers(config)
        produced = [name for scorer in self.scorers for name in scorer.columns(np.zeros((0, 2)))]
        missing = [key for key in self.keys if key not in produced]
        if missing:
            raise DeitaError(f"filter.sort_key names {', '.join(missing)}, which the service does not compute "
                             f"(its scorers give {', '.join(produced)})")
        self.columns = tuple(produced)
        self.embed_stage = EmbedStage(config.embed)
        self.embedder = self.embed_stage.load_worker()
        self.dimensions = int(np.asarray(self.embedder(["dimensions"]).values).shape[1])

    def job(self, record: Record, score: bool, embed: bool) -> Job | RecordFailure:
        """The job for a parsed record, checked by the stages as `deita select` checks it."""
        try:
            if score:
                for scorer in self.scorers:
                    scorer.stage.requests(record)
            text = self.embed_stage.requests(record)[0] if embed else None
        except RecordProblem as problem:
            return RecordFailure("encoding", str(problem))
        return Job(record, text, score)

    def run(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Results in job order; when the merged batch fails, each job runs alone and only a failing one
        gets a failure in its slot."""
        try:
            return self._run(jobs)
        except Exception as err:  # noqa: BLE001  (any engine error: find the record(s) it belongs to)
            if len(jobs) == 1:
                return [JobResult(failure=engine_failure(err))]
            log.warning("a batch of %d jobs failed (%s); running them one by one", len(jobs), err)
            return [self.run([job])[0] for job in jobs]

    def _run(self, jobs: Sequence[Job]) -> list[JobResult]:
        results = [JobResult() for _ in jobs]
        scored = [i for i, job in enumerate(jobs) if job.score and job.record is not None]
        turns = [turn for i in scored for turn in jobs[i].record.turns]
        bounds = np.cumsum([0] + [len(jobs[i].record.turns) for i in scored])
        for scorer in self.scorers if turns else ():
            rows = scorer.worker(turns).values
            for position, i in enumerate(scored):
                results[i].columns.update(scorer.columns(rows[bounds[position] : bounds[position + 1]]))
        embedded = [i for i, job in enumerate(jobs) if job.text is not None]
        if embedded:
            texts = [jobs[i].text for i in embedded]
            vectors = np.asarray(self.embedder(texts).values, dtype=np.float32)
            for i, vector, tokens in zip(embedded, vectors, self.token_counts(texts), strict=True):
                results[i].vector, results[i].tokens = vector, tokens
        return results

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text the embedder reads (within its window): the `usage` of an embeddings answer."""
        embedder, limit = self.embedder, self.config.embed.max_length
        if isinstance(embedder, CausalEmbedder):
            ids = embedder.tokenizer([clip(text, limit) for text in texts])["input_ids"]
        elif isinstance(embedder, SentenceEmbedder):
            limit = embedder.model.max_seq_length
            ids = embedder.model.tokenizer([clip(text, limit) for text in texts], add_special_tokens=True)["input_ids"]
        elif isinstance(embedder, StaticEmbedder):
            ids = [e.ids for e in embedder.model.tokenizer.encode_batch([clip(t, limit) for t in texts],
                                                                         add_special_tokens=False)]
        else:
            raise DeitaError(f"the service cannot count the tokens of a {type(embedder).__name__}")
        return [min(len(row), limit) for row in ids]

    def models(self) -> list[dict[str, str]]:
        """Role and model of everything loaded, for /v1/info."""
        return [{"role": role, "model": model} for role, model in self.config.models_used()]


def engine_failure(err: BaseException) -> RecordFailure:
    """A failure for the slot of a job the engine could not run: the error's own sentence for a DeitaError,
    a pointer to the server log for anything else (its traceback goes there, never into a response)."""
    if isinstance(err, DeitaError):
        return RecordFailure("engine", str(err))
    log.error("the engine failed on one record", exc_info=err)
    return RecordFailure("engine", f"internal error while serving this record ({type(err).__name__}); see the "
                         "server log")
