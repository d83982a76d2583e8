"""`deita evol` and `deita rank`: read the input once, run the paid calls shard by shard (resumable), write
the rows in input order and every reject with its reason, and print the cost.

Bad input (a record without an instruction, a broken EVOLVED line) goes to the run's `RecordPolicy`: it
stops the run naming the file and record, or with skip goes to OUTPUT.rejects.jsonl. Items the LLM could
not do (an evolution that stays empty, refused or unchanged; scores that stay invalid) always go to the
rejects file with the reason (kind "model", or "server" when a rerun may succeed), and the run goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deita.data.io import ReadStats, RecordPolicy, RecordWriter, input_size, iter_records, rejects_path_for
from deita.data.paths import check_paths, prepare_output
from deita.data.policy import given_or_own
from deita.data.records import Record
from deita.errors import DeitaError, quote
from deita.evol.client import ChatClient, Usage
from deita.evol.config import EvolConfig, RankConfig
from deita.evol.estimate import (
    COMPLEXITY_GROWTH_TOKENS,
    QUALITY_GROWTH,
    Estimate,
    check_counted,
    evolution_estimate,
    ranking_estimate,
    token_counter,
)
from deita.evol.evolve import EvolutionFailed, evolve
from deita.evol.jobs import Item, JobSummary, Outcome, OutcomeStore, Work, run_job, shards_in_flight
from deita.evol.prompts import load_prompts
from deita.evol.rank import RankingFailed, item_key, rank, ranking_prompt, shown_order
from deita.evol.rows import evolved_problem, evolved_row, iter_rows
from deita.runtime.options import RunOptions
from deita.runtime.progress import ProgressBar
from deita.runtime.runner import cache_root


@dataclass
class JobReport:
    """What a run did, as the lines the CLI prints (the cost report last)."""

    done: str
    output: Path
    summary: JobSummary
    input_rejected: int = 0
    rejects: Path | None = None
    rejected_kinds: str = ""
    """Every reject of the run counted by kind ("2 empty, 1 model")."""

    def lines(self) -> list[str]:
        s = self.summary
        lines = [f"{self.done} {s.rows:,} of {s.items + self.input_rejected:,} records → {self.output}"]
        if s.rejected or self.input_rejected:
            kinds = f", {s.breakdown()}" if s.rejected else ""
            again = f"; {s.transient:,} of them may succeed on a rerun" if s.transient else ""
            lines.append(f"rejected {s.rejected + self.input_rejected:,} ({self.input_rejected:,} bad input{kinds}"
                         f"{again}) → {self.rejects}; by kind: {self.rejected_kinds}")
            lines += [f"  {kind}, first: {quote(reason, 160)}" for kind, reason in s.examples.items()]
        if s.resumed_shards:
            lines.append(f"resumed {s.resumed_shards} of {s.shards} shards from the cache: no calls made for them")
        lines.append(f"cost of this run: {s.usage.line()}")
        if s.earlier.calls:
            lines.append(f"cost of the reused results when they ran: {s.earlier.line()}")
        return lines


def check_job_paths(input_path: Path, output_path: Path, options: RunOptions) -> None:
    """Refuse, before any call, outputs that would overwrite the input or each other."""
    if not Path(input_path).exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    if Path(output_path).suffix.lower() != ".jsonl":
        raise DeitaError(f"--output {output_path}: EVOLVED and RANKED files are JSON Lines; give a path ending "
                         "in .jsonl")
    check_paths({"input": input_path}, {"--output": output_path, "rejects file": rejects_path_for(output_path),
                                        "cache": cache_root(options, Path(output_path))})
    prepare_output("--output", output_path)


def _shards(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Output:
    """The output rows and rejects of a job, with progress; aborted (output left as it was) on failure."""

    def __init__(self, output: Path, policy: RecordPolicy, bar: ProgressBar, position: Callable[[], int]) -> None:
        self.writer = RecordWriter(output, "jsonl")
        self.policy, self.bar, self.position = policy, bar, position

    def emit(self, items: list[Item], outcomes: list[Outcome]) -> None:
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.row is not None:
                self.writer.write(outcome.row)
            else:
                reason = f"{outcome.reject}{' (may succeed on a rerun)' if outcome.transient else ''}"
                self.policy.set_aside(item.index, item.location, outcome.kind, reason, item.raw)
        self.bar.advance(len(items), self.position())


def _run(output: Path, options: RunOptions, description: str, items: Iterator[Item], store: OutcomeStore,
         client: ChatClient, work: Work, policy: RecordPolicy, total: tuple[int, str],
         position: Callable[[], int]) -> JobSummary:
    """The job's items through `work` into the output (and rejects), with a progress bar over the input."""
    with ProgressBar(description, total[0], quiet=options.quiet, interval=options.progress_interval,
                     total_unit=total[1]) as bar:
        sink = _Output(output, policy, bar, position)

        async def main() -> JobSummary:
            async with client:
                return await run_job(_shards(items, options.shard_size), store, work, sink.emit,
                                     shards_in_flight(client.server.concurrency, options.shard_size))

        try:
            summary = asyncio.run(main())
            if summary.items and not summary.rows:
                raise DeitaError(all_failed(summary, output, policy.path))
        except BaseException:
            sink.writer.abort()
            raise
        sink.writer.close()
    return summary


def all_failed(summary: JobSummary, output: Path, rejects: Path | None) -> str:
    """The one-line error of a job in which no item succeeded (the output is not written)."""
    first = next(iter(summary.examples.values()), "")
    again = (f"; {summary.transient:,} may succeed on a rerun (finished shards are kept)"
             if summary.transient else "")
    return (f"every one of the {summary.items:,} items failed ({summary.breakdown()}), so {output} was not "
            f"written; first reason: {quote(first, 160)}; all reasons in {rejects}{again}")


# ---------------------------------------------------------------- deita evol


def seed_problem(record: Record, score_type: str) -> str | None:
    """Why a record cannot be a seed: EVOL starts from the first turn's instruction (and response)."""
    if not record.turns or not record.turns[0].instruction.strip():
        return "no instruction in the first turn"
    if score_type == "quality" and not record.turns[0].response.strip():
        return "no response in the first turn (quality evolves the response)"
    return None


def _seeds(path: Path, score_type: str, options: RunOptions, stats: ReadStats, policy: RecordPolicy
           ) -> Iterator[Item]:
    """Good seed records as items (the first turn's instruction, and response for quality)."""
    records = iter_records(path, fmt=options.format, policy=policy, pairing=options.pairing, stats=stats)
    for record in records:
        problem = seed_problem(record, score_type)
        if problem is not None:
            policy.reject(path, record.index, record.location, problem, record.raw, kind="empty")
            continue
        turn = record.turns[0]
        response = turn.response if score_type == "quality" else ""
        yield Item(record.index, record.location, record.raw, [turn.instruction, response],
                   (turn.instruction, response, record.raw.get("id")))


def job_policy(options: RunOptions, output_path: Path, policy: RecordPolicy | None, write: bool = True):
    """The job's policy as given, or the run's own from `options`: rejects in OUTPUT.rejects.jsonl, where the
    items the LLM could not do always go."""
    return given_or_own(policy, options, rejects_path_for(output_path), write=write, keep_failures=True)


def evolve_file(input_path: str | Path, output_path: str | Path, config: EvolConfig,
                options: RunOptions = RunOptions(), policy: RecordPolicy | None = None) -> JobReport:
    """Evolve the first turn of every seed record `config.steps` times into EVOLVED rows (docs/evol.md).
    `policy`: what happens to bad input (default: `options.on_error`); failed items always go to its file."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_job_paths(input_path, output_path, options)
    prompts = load_prompts(config.prompts)
    type_prompts = prompts.of(config.type)
    served = config.served_model()
    store = OutcomeStore(cache_root(options, output_path) / f"evol-{config.type}",
                         {**config.fingerprint(prompts.digest(config.type)), "format": options.format,
                          "pairing": options.pairing})
    client = ChatClient(config.openai, served, config.retry)

    async def work(item: Item) -> Outcome:
        instruction, response, seed_id = item.payload
        usage = Usage()
        try:
            evolution = await evolve(client, type_prompts, config, instruction, response, usage)
        except EvolutionFailed as err:
            return Outcome(reject=err.reason, transient=err.transient, usage=usage, kind=err.kind)
        row = evolved_row(item.index, seed_id, config.type, instruction, response, evolution.operations,
                          evolution.variants, usage.to_dict())
        return Outcome(row=row, usage=usage)

    stats = ReadStats()
    with job_policy(options, output_path, policy) as policy:
        before = policy.count
        seeds = _seeds(input_path, config.type, options, stats, policy)
        summary = _run(output_path, options, f"evolving {config.type}", seeds, store, client, work, policy,
                       input_size(input_path), lambda: stats.bytes_read)
    input_rejected = policy.count - before - summary.rejected
    if summary.items == 0:
        raise DeitaError(f"{input_path}: no usable seeds ({input_rejected} rejected)")
    return JobReport(f"evolved ({config.type}, {config.steps} steps)", output_path, summary, input_rejected,
                     policy.path, policy.by_kind())


def estimate_evol(input_path: str | Path, output_path: str | Path, config: EvolConfig,
                  options: RunOptions = RunOptions(), policy: RecordPolicy | None = None) -> list[str]:
    """`deita evol --dry-run`: tokens of the evolution calls and of ranking their output, no calls made."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise DeitaError(f"{input_path}: no such file or directory")
    type_prompts = load_prompts(config.prompts).of(config.type)
    count, counted_with = token_counter(config.model)
    estimate = Estimate(counted_with)
    stats = ReadStats()
    with job_policy(options, Path(output_path), policy, write=False) as policy:  # a dry run writes nothing
        for item in _seeds(input_path, config.type, options, stats, policy):
            instruction, response, _ = item.payload
            evolution_estimate(estimate, type_prompts, config.type, config.steps, instruction, response, count)
            estimate.items += 1
    check_counted(estimate, str(input_path))
    estimate.skipped = policy.count
    if config.type == "complexity":
        estimate.assumptions.append(f"each evolution adds ~{COMPLEXITY_GROWTH_TOKENS} tokens to the instruction")
    else:
        estimate.assumptions.append(f"each evolution makes the response {QUALITY_GROWTH - 1:.0%} longer")
    estimate.assumptions.append("no retries; chat formatting not counted")
    return estimate.lines(f"seeds ({config.type}, {config.steps} steps)")


# ---------------------------------------------------------------- deita rank


def _evolved(path: Path, score_type: str | None, policy: RecordPolicy, position: list[int],
             resolved: list[str]) -> Iterator[Item]:
    """Good EVOLVED rows as items; the type is `score_type`, else the first good row's (kept in `resolved`)."""
    for index, location, row, problem in iter_rows(path, position):
        if problem is None:
            problem = evolved_problem(row, score_type or (resolved[0] if resolved else None))
        if problem is not None:
            policy.reject(path, index, location, problem, row)
            continue
        if not resolved:
            resolved.append(row["type"])
        instruction = row.get("instruction") if isinstance(row.get("instruction"), str) else ""
        yield Item(index, location, row, [row["type"], instruction, *row["variants"]], row)


def rank_file(input_path: str | Path, output_path: str | Path, config: RankConfig,
              options: RunOptions = RunOptions(), policy: RecordPolicy | None = None) -> JobReport:
    """Score every EVOLVED row's variants jointly into RANKED rows (docs/evol.md); `policy` as `evolve_file`'s."""
    input_path, output_path = Path(input_path), Path(output_path)
    check_job_paths(input_path, output_path, options)
    prompts = load_prompts(config.prompts)
    served = config.served_model()
    resolved: list[str] = [config.type] if config.type else []
    position = [0]
    client = ChatClient(config.openai, served, config.retry)
    with job_policy(options, output_path, policy) as policy:
        before = policy.count
        items = _evolved(input_path, config.type, policy, position, resolved)
        first = next(items, None)
        if first is None:
            raise DeitaError(f"{input_path}: no usable EVOLVED rows ({policy.count - before} rejected)")
        score_type = resolved[0]
        type_prompts = prompts.of(score_type)
        store = OutcomeStore(cache_root(options, output_path) / f"rank-{score_type}",
                             config.fingerprint(score_type, prompts.digest(score_type)))

        async def work(item: Item) -> Outcome:
            row, usage = item.payload, Usage()
            try:
                ranking = await rank(client, type_prompts, config, score_type, row.get("instruction", ""),
                                     row["variants"], usage)
            except RankingFailed as err:
                return Outcome(reject=err.reason, transient=err.transient, usage=usage, kind=err.kind)
            ranked = {**row, "order": ranking.order, "scores": ranking.scores, "rank_usage": usage.to_dict()}
            return Outcome(row=ranked, usage=usage)

        def all_items() -> Iterator[Item]:
            yield first
            yield from items

        summary = _run(output_path, options, f"ranking {score_type}", all_items(), store, client, work, policy,
                       (input_path.stat().st_size, "bytes"), lambda: position[0])
    return JobReport(f"ranked ({score_type})", output_path, summary, policy.count - before - summary.rejected,
                     policy.path, policy.by_kind())


def estimate_rank(input_path: str | Path, output_path: str | Path, config: RankConfig,
                  options: RunOptions = RunOptions(), policy: RecordPolicy | None = None) -> list[str]:
    """`deita rank --dry-run`: the ranking prompts counted exactly, the answers estimated; no calls made."""
    input_path = Path(input_path)
    prompts = load_prompts(config.prompts)
    count, counted_with = token_counter(config.model)
    estimate = Estimate(counted_with)
    resolved: list[str] = [config.type] if config.type else []
    with job_policy(options, Path(output_path), policy, write=False) as policy:  # a dry run writes nothing
        for item in _evolved(input_path, config.type, policy, [0], resolved):
            row = item.payload
            type_prompts = prompts.of(resolved[0])
            instruction = row.get("instruction", "")
            order = shown_order(config.seed, item_key(resolved[0], instruction, row["variants"]),
                                len(row["variants"]))
            prompt = ranking_prompt(type_prompts, resolved[0], instruction, row["variants"], order)
            ranking_estimate(estimate, prompt, type_prompts.system, len(row["variants"]), count)
            estimate.items += 1
    check_counted(estimate, str(input_path))
    estimate.skipped = policy.count
    estimate.assumptions.append("answers of the form {\"scores\": [...]}; no retries; chat formatting not counted")
    return estimate.lines("EVOLVED rows")
