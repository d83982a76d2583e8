"""`--dry-run`: the input and output tokens a job would cost, estimated from its input without calling the server.

Input tokens are counted on the very prompts the job would send (evolution prompts for the seeds'
first step, ranking prompts exactly); what the LLM will write is assumed. Tokens are counted with the
served model's tokenizer when `--model` names it, else as ~4 characters per token. Chat formatting
(a few tokens per message) and retries are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deita.errors import DeitaError
from deita.evol.prompts import TypePrompts, fill

CHARS_PER_TOKEN = 4.0
COMPLEXITY_GROWTH_TOKENS = 25
"""Tokens an evolution step adds to an instruction (the default prompts ask for 10 to 20 words)."""
QUALITY_GROWTH = 1.25
"""Factor by which an evolution step lengthens a response."""


def ranking_answer_tokens(count: int) -> int:
    """`{"scores": [a, b, …]}`: a few tokens of frame and two per score."""
    return 6 + 2 * count


Counter = Callable[[str], int]


def token_counter(model: str) -> tuple[Counter, str]:
    """(count tokens of a text, how they are counted): `model`'s tokenizer, or ~4 characters per token."""
    if not model:
        return (lambda text: round(len(text) / CHARS_PER_TOKEN)), \
            "~4 characters per token (give --model to count with the served model's tokenizer)"
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise DeitaError(f"--model {model}: cannot load its tokenizer to count tokens ({err})") from err
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), f"the tokenizer of {model}"


@dataclass
class Estimate:
    counted_with: str
    items: int = 0
    skipped: int = 0
    """Input records left out (bad, or without what the job needs) under --on-error skip."""
    evolution_calls: int = 0
    evolution_input: float = 0.0
    evolution_output: float = 0.0
    ranking_calls: int = 0
    ranking_input: float = 0.0
    ranking_output: float = 0.0
    assumptions: list[str] = field(default_factory=list)

    def lines(self, what: str) -> list[str]:
        skipped = f", {self.skipped:,} records skipped" if self.skipped else ""
        lines = [f"dry run: {self.items:,} {what}{skipped}, no calls made; tokens counted with {self.counted_with}"]
        total_in, total_out = self.evolution_input + self.ranking_input, self.evolution_output + self.ranking_output
        if self.evolution_calls:
            lines.append(f"  evolution (deita evol): {self.evolution_calls:,} calls, ~{self.evolution_input:,.0f} "
                         f"input + ~{self.evolution_output:,.0f} output tokens")
        lines.append(f"  ranking (deita rank):   {self.ranking_calls:,} calls, ~{self.ranking_input:,.0f} input + "
                     f"~{self.ranking_output:,.0f} output tokens")
        lines.append(f"  total:                  ~{total_in:,.0f} input + ~{total_out:,.0f} output tokens")
        lines += [f"  assumed: {a}" for a in self.assumptions]
        return lines


def evolution_estimate(estimate: Estimate, prompts: TypePrompts, score_type: str, steps: int, instruction: str,
                       response: str, count: Counter) -> None:
    """Add one seed's evolution chain and the ranking of its variants to `estimate`."""
    system = count(prompts.system) if prompts.system.strip() else 0
    question = count(instruction)
    text = float(question if score_type == "complexity" else count(response))
    lengths = [text]
    for step in range(steps):
        _, direction = prompts.operation(step)
        frame = fill(prompts.evolve, operation=direction, instruction="" if score_type == "complexity" else instruction,
                     response="")
        grown = text + COMPLEXITY_GROWTH_TOKENS if score_type == "complexity" else text * QUALITY_GROWTH
        estimate.evolution_input += system + count(frame) + text
        estimate.evolution_output += grown
        text = grown
        lengths.append(text)
    estimate.evolution_calls += steps
    frame = fill(prompts.rank, count=str(steps + 1), variants="", instruction=instruction)
    shown = sum(count(fill(prompts.variant, number=str(k + 1), text="")) + length for k, length in enumerate(lengths))
    _add_ranking(estimate, system + count(frame) + shown, steps + 1)


def ranking_estimate(estimate: Estimate, prompt: str, system: str, variants: int, count: Counter) -> None:
    """Add one ranking call, whose prompt is known exactly."""
    _add_ranking(estimate, count(prompt) + (count(system) if system.strip() else 0), variants)


def _add_ranking(estimate: Estimate, tokens: float, variants: int) -> None:
    estimate.ranking_calls += 1
    estimate.ranking_input += tokens
    estimate.ranking_output += ranking_answer_tokens(variants)


def check_counted(estimate: Estimate, source: str) -> None:
    if estimate.items == 0:
        raise DeitaError(f"{source}: no usable records to estimate")
