"""EVOL commands: evol complexity|quality (grow scorer training data), rank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .flags import CONTEXT, OUTPUT, Flag, build_config, command, config_flags
from .outputs import command_policy, echo_lines


def _job_flags(exclude: tuple[str, ...] = ()) -> dict[str, Flag]:
    """RunOptions flags of the LLM jobs (evol, rank): read, reject, shard and progress options."""
    from deita.evol.config import JOB_RUN_OPTIONS, RUN_FLAGS_UNUSED
    from deita.runtime.options import RunOptions

    return config_flags(RunOptions, JOB_RUN_OPTIONS, exclude=(*RUN_FLAGS_UNUSED, *exclude))


def _llm_flags(cls: type) -> dict[str, Flag]:
    from deita.evol.config import SERVER_FIELDS_UNUSED

    return config_flags(cls, exclude=tuple(f"openai.{name}" for name in SERVER_FIELDS_UNUSED))


DRY_RUN = click.Option(["--dry-run"], is_flag=True, help="Estimate the input and output tokens of the whole job "
                       "from the input, without calling the server.")


def evol_command() -> click.Command:
    group = click.Group("evol", context_settings=CONTEXT, help="EVOL: grow scorer training data from seeds with any "
                        "OpenAI-compatible chat server. Then `deita rank`.\n\nExample: deita evol complexity "
                        "seeds.json -o evolved.jsonl --base-url http://host:8000/v1 --served-model NAME")
    for score_type in ("complexity", "quality"):
        group.add_command(_evol_type_command(score_type))
    return group


def _evol_type_command(score_type: str) -> click.Command:
    from deita.evol.config import JOB_RUN_OPTIONS, EvolConfig
    from deita.runtime.options import RunOptions

    evol_flags, run_flags = _llm_flags(EvolConfig), _job_flags()
    evol_flags.pop("--type")
    what = "instruction" if score_type == "complexity" else "response (to the fixed instruction)"
    seeds = click.Argument(["input"], type=click.Path(path_type=Path), metavar="SEEDS")

    def run(input: Path, output: Path, dry_run: bool, **values: Any) -> None:
        from deita.data.policy import rejects_path_for
        from deita.evol.run import estimate_evol, evolve_file

        config = build_config(EvolConfig, evol_flags, values, EvolConfig(type=score_type))
        options = build_config(RunOptions, run_flags, values, JOB_RUN_OPTIONS)
        with command_policy(options, rejects_path_for(output), write=not dry_run, keep_failures=True) as policy:
            echo_lines(estimate_evol(input, output, config, options, policy) if dry_run else
                       evolve_file(input, output, config, options, policy).lines())

    return command(score_type, f"Evolve the first turn's {what} of every seed --steps times, each step from the "
                   "previous variant, into EVOLVED (JSONL). Failed evolutions go to OUTPUT.rejects.jsonl with the "
                   "reason. Resumable; prints the tokens spent.\n\nExample: deita evol "
                   f"{score_type} seeds.json -o evolved.jsonl --base-url http://host:8000/v1 --served-model NAME",
                   [seeds, OUTPUT, DRY_RUN], run, (evol_flags, run_flags))


def rank_command() -> click.Command:
    from deita.evol.config import JOB_RUN_OPTIONS, RankConfig
    from deita.runtime.options import RunOptions

    rank_flags, run_flags = _llm_flags(RankConfig), _job_flags(exclude=("format", "pairing"))
    evolved = click.Argument(["input"], type=click.Path(path_type=Path), metavar="EVOLVED")

    def run(input: Path, output: Path, dry_run: bool, **values: Any) -> None:
        from deita.data.policy import rejects_path_for
        from deita.evol.run import estimate_rank, rank_file

        config = build_config(RankConfig, rank_flags, values)
        options = build_config(RunOptions, run_flags, values, JOB_RUN_OPTIONS)
        with command_policy(options, rejects_path_for(output), write=not dry_run, keep_failures=True) as policy:
            echo_lines(estimate_rank(input, output, config, options, policy) if dry_run else
                       rank_file(input, output, config, options, policy).lines())

    return command("rank", "Score the variants of every EVOLVED row jointly (1..6 for 5 steps) in one call each, "
                   "shown in a seeded random order, into RANKED (JSONL). Invalid scores are asked again, then the row "
                   "is a reject; never a default. Resumable; prints the tokens spent.\n\nExample: deita rank "
                   "evolved.jsonl -o ranked.jsonl --base-url http://host:8000/v1 --served-model NAME",
                   [evolved, OUTPUT, DRY_RUN], run, (rank_flags, run_flags))
