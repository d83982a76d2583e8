"""EVOL: evolve one seed `steps` times, each step rewriting the previous variant with the next operation.

Complexity rewrites the instruction (add a constraint, deepen, concretize, add reasoning steps,
complicate the input); quality rewrites the response to the fixed instruction (more helpful, relevant,
deep, creative, detailed). An answer that is empty, a refusal, cut off, or no different from an earlier
variant is asked for again, up to `tries` times; then the seed is rejected with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deita.evol.client import AnswerRejected, ChatClient, Usage
from deita.evol.config import EvolConfig
from deita.evol.prompts import TypePrompts, fill

REFUSAL = re.compile(
    r"^(i'?m sorry|i am sorry|sorry,? (but )?i|i apologi[sz]e|i can(no|')t|i'?m (not able|unable)|"
    r"i am (not able|unable)|i will not|i won'?t|as an ai\b)", re.IGNORECASE)
"""How refusals open; only the start of an answer is checked, so a response discussing apologies is fine."""
LABEL = re.compile(r"^#*\s*(rewritten|new|improved|evolved)\s+(instruction|prompt|answer|response)\s*#*\s*:\s*",
                   re.IGNORECASE)
WRAPPERS = ("instruction", "answer", "response", "question")


class EvolutionFailed(Exception):
    """A seed whose evolution could not be completed: the reason names the step and what went wrong.
    `kind`: "server" (no answer from the server) or "model" (answers came, none usable)."""

    def __init__(self, reason: str, transient: bool = False, kind: str = "model") -> None:
        super().__init__(reason)
        self.reason, self.transient, self.kind = reason, transient, kind


@dataclass(frozen=True)
class Evolution:
    operations: list[str]
    variants: list[str]
    """The seed's text first, then one variant per step."""


def clean(text: str) -> str:
    """The answer without what models add around the text: surrounding space, a tag pair echoed from the
    prompt (`<instruction>…</instruction>`), a leading label such as "Rewritten instruction:"."""
    text = text.strip()
    for tag in WRAPPERS:
        opening, closing = f"<{tag}>", f"</{tag}>"
        if text.lower().startswith(opening) and text.lower().endswith(closing):
            text = text[len(opening) : -len(closing)].strip()
    return LABEL.sub("", text, count=1).strip()


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def evolution_problem(text: str, finish_reason: str | None, earlier: list[str]) -> str | None:
    """Why a cleaned answer is not a usable evolution of the last of `earlier`, or None."""
    if finish_reason == "length":
        return "answer cut off at --max-tokens"
    if not text:
        return "empty answer"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "answer is not valid Unicode (a lone surrogate)"
    if REFUSAL.match(text.replace("\u2019", "'")):
        return f"the model refused ({text[:80]!r})"
    normal = _normal(text)
    for i, variant in enumerate(earlier):
        if _normal(variant) == normal:
            return "unchanged (same as the previous variant)" if i == len(earlier) - 1 else \
                f"same as variant {i} (the seed is variant 0)"
    return None


async def evolve(client: ChatClient, prompts: TypePrompts, config: EvolConfig, instruction: str, response: str,
                 usage: Usage) -> Evolution:
    """The seed's chain of `config.steps` evolutions (tokens spent go into `usage`); raises EvolutionFailed."""
    complexity = config.type == "complexity"
    variants = [instruction if complexity else response]
    operations = []
    for step in range(config.steps):
        name, direction = prompts.operation(step)
        if complexity:
            user = fill(prompts.evolve, operation=direction, instruction=variants[-1])
        else:
            user = fill(prompts.evolve, operation=direction, instruction=instruction, response=variants[-1])
        where = f"step {step + 1} ({name})"
        problem = ""
        for _ in range(config.tries):
            try:
                answer = await client.chat(prompts.messages(user), temperature=config.temperature,
                                           max_tokens=config.max_tokens, usage=usage)
            except AnswerRejected as err:
                raise EvolutionFailed(f"{where}: {err.reason}", err.transient, "server") from None
            text = clean(answer.text)
            problem = evolution_problem(text, answer.finish_reason, variants) or ""
            if not problem:
                variants.append(text)
                operations.append(name)
                break
        else:
            raise EvolutionFailed(f"{where}: {problem}, {config.tries} tries")
    return Evolution(operations, variants)
