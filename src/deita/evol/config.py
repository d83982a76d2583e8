"""`EvolConfig` and `RankConfig`: the options of `deita evol` and `deita rank` (flags, YAML keys, keyword arguments).

The server options are the scoring openai backend's (`OpenAIOptions`: --base-url, --served-model,
--api-key-env, --concurrency, --timeout), so one server section serves scoring, evolution and ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deita.config import SEED_RANGE, Config, option
from deita.errors import DeitaError
from deita.evol.client import RetryOptions
from deita.runtime.options import RunOptions
from deita.scoring.backends.openai import OpenAIOptions
from deita.scoring.templates import SCORE_TYPES

MAX_STEPS = 5
"""Variants are scored 1..steps+1 and a scorer emits one digit 1..6: at most 5 evolutions."""
SERVER_FIELDS_UNUSED = ("max_logprobs", "strict", "http_tries")
"""Options of OpenAIOptions that only the scoring backend reads (log-probs of /completions; its tries: evol and
rank take theirs, `--http-tries`, from `retry`), so they get no flag here."""
RUN_FLAGS_UNUSED = ("executor", "ray_address", "num_workers")
"""RunOptions of the model stages that paid calls do not have: they run here, as asyncio tasks."""
JOB_RUN_OPTIONS = replace(RunOptions(), shard_size=64)
"""Paid calls save their results more often than model stages: a crash loses at most a few small shards."""


def _served(model: str, server: OpenAIOptions) -> str:
    served = server.served_model or model
    if not served:
        raise DeitaError("--served-model: name the model the server serves (or give --model)")
    return served


@dataclass(frozen=True)
class EvolConfig(Config):
    """Options of `deita evol complexity|quality`."""

    type: str = option("complexity", "complexity (evolve the instruction) or quality (evolve the response).",
                       choices=SCORE_TYPES)
    steps: int = option(MAX_STEPS, "Evolutions per seed, each from the previous variant (variants = steps + 1).",
                        min=1, max=MAX_STEPS)
    prompts: str | None = option(None, "YAML file overriding the evolution and ranking prompts, key by key "
                                 "(see docs/evol.md).")
    model: str = option("", "Hub id or local folder of the served model: its tokenizer counts --dry-run tokens, "
                        "and its name is the default --served-model.")
    temperature: float = option(0.7, "Sampling temperature of the evolution calls.", min=0.0, max=2.0)
    max_tokens: int = option(2048, "Longest answer (tokens) of one evolution call; a cut-off answer is retried.",
                             min=16)
    tries: int = option(3, "Tries per step when an answer is empty, refused, unchanged or cut off; then the seed "
                        "is a reject with the reason.", min=1, max=100)
    openai: OpenAIOptions = option(default_factory=OpenAIOptions)
    retry: RetryOptions = option(default_factory=RetryOptions)

    def served_model(self) -> str:
        return _served(self.model, self.openai)

    def fingerprint(self, prompts_digest: str) -> dict[str, object]:
        """What decides the evolutions (server, model, prompts, sampling); never the key or concurrency."""
        return {"stage": "evol", "type": self.type, "steps": self.steps, "prompts": prompts_digest,
                "served_model": self.served_model(), "base_url": self.openai.base_url,
                "temperature": self.temperature, "max_tokens": self.max_tokens, "tries": self.tries}


@dataclass(frozen=True)
class RankConfig(Config):
    """Options of `deita rank`."""

    type: str | None = option(None, "complexity or quality (default: the `type` of the EVOLVED rows).",
                              choices=SCORE_TYPES)
    seed: int = option(42, "Seed of the order the variants are shown in (one shuffle per item, against "
                       "position bias).", min=SEED_RANGE[0], max=SEED_RANGE[1])
    structured: bool = option(True, "Ask for a JSON schema answer (response_format) when the server takes it; "
                              "off: always parse the plain answer strictly.")
    prompts: str | None = option(None, "YAML file overriding the evolution and ranking prompts, key by key "
                                 "(see docs/evol.md).")
    model: str = option("", "Hub id or local folder of the served model: its tokenizer counts --dry-run tokens, "
                        "and its name is the default --served-model.")
    temperature: float = option(0.0, "Sampling temperature of the ranking calls.", min=0.0, max=2.0)
    max_tokens: int = option(256, "Longest answer (tokens) of one ranking call.", min=16)
    tries: int = option(3, "Tries per item when the scores are missing, malformed or out of range; then the item "
                        "is a reject with the reason (never a default score).", min=1, max=100)
    openai: OpenAIOptions = option(default_factory=OpenAIOptions)
    retry: RetryOptions = option(default_factory=RetryOptions)

    def served_model(self) -> str:
        return _served(self.model, self.openai)

    def fingerprint(self, score_type: str, prompts_digest: str) -> dict[str, object]:
        return {"stage": "rank", "type": score_type, "seed": self.seed, "structured": self.structured,
                "prompts": prompts_digest, "served_model": self.served_model(),
                "base_url": self.openai.base_url, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "tries": self.tries}
