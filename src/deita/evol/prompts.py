"""The evolution and ranking prompts: package defaults (`prompts.yaml`), overridable key by key with a file.

Placeholders are `{name}`; `fill` replaces only the names a template is documented to take, so JSON
examples with braces in a prompt stay as written (no `str.format` escaping for users to get wrong).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from deita.config import unknown_name
from deita.config_yaml import parse_yaml, read_yaml
from deita.errors import DeitaError, quote
from deita.scoring.templates import SCORE_TYPES

PLACEHOLDERS = {
    "complexity": {"evolve": ("operation", "instruction"), "rank": ("count", "variants"),
                   "variant": ("number", "text"), "system": ()},
    "quality": {"evolve": ("operation", "instruction", "response"), "rank": ("count", "variants", "instruction"),
                "variant": ("number", "text"), "system": ()},
}
"""Per type and template: the placeholders it must hold (all of them are replaced, none may be missing)."""


@dataclass(frozen=True)
class TypePrompts:
    """The prompts of one type: an evolution frame, its operations in order, the joint ranking prompt."""

    system: str
    evolve: str
    operations: tuple[tuple[str, str], ...]
    rank: str
    variant: str

    def operation(self, step: int) -> tuple[str, str]:
        """(name, text) of the operation of 0-based `step`: in order, cycled when there are fewer than steps."""
        return self.operations[step % len(self.operations)]

    def messages(self, user: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return [*system, {"role": "user", "content": user}]


@dataclass(frozen=True)
class PromptSet:
    complexity: TypePrompts
    quality: TypePrompts
    source: str

    def of(self, score_type: str) -> TypePrompts:
        return getattr(self, score_type)

    def digest(self, score_type: str) -> str:
        """A hash of one type's prompts: part of the cache key, so edited prompts never reuse old answers."""
        prompts = self.of(score_type)
        text = json.dumps([prompts.system, prompts.evolve, prompts.operations, prompts.rank, prompts.variant])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` of `values` replaced (one pass, so replaced text is never re-read)."""
    out, i = [], 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            break
        end = template.find("}", start)
        name = template[start + 1 : end] if end > start else ""
        if name in values:
            out.append(template[i:start] + str(values[name]))
            i = end + 1
        else:
            out.append(template[i : start + 1])
            i = start + 1
    out.append(template[i:])
    return "".join(out)


def default_prompts_text() -> str:
    return resources.files("deita.evol").joinpath("prompts.yaml").read_text(encoding="utf-8")


def load_prompts(path: str | Path | None = None) -> PromptSet:
    """The package prompts, with the keys of the YAML file `path` (if any) replacing theirs.

    Unknown keys, templates that lack one of their placeholders and empty operation lists are errors
    naming the file and the key.
    """
    data = parse_yaml(default_prompts_text(), "default prompts")
    source = "default prompts"
    if path is not None:
        path = Path(path)
        source = str(path)
        override = read_yaml(path, "prompts file (--prompts)")
        if not isinstance(override, dict):
            raise DeitaError(f"{path}: expected a mapping with the sections {', '.join(SCORE_TYPES)}, got "
                             f"{quote(override)}")
        _merge(data, override, source)
    return PromptSet(*(_type_prompts(score_type, data[score_type], source) for score_type in SCORE_TYPES),
                     source=source)


def _merge(base: dict[str, Any], override: dict[str, Any], source: str) -> None:
    for score_type, section in override.items():
        _known(score_type, list(SCORE_TYPES), source)
        if not isinstance(section, dict):
            raise DeitaError(f"{source}: {score_type}: expected a mapping of templates")
        for key, value in section.items():
            _known(key, [*PLACEHOLDERS[score_type], "operations"], f"{source}: {score_type}")
            base[score_type][key] = value  # operations are replaced as a whole: their order is the step order


def _known(key: Any, valid: list[str], where: str) -> None:
    if key not in valid:
        raise DeitaError(f"{where}: {unknown_name('key', key, valid)}")


def _type_prompts(score_type: str, section: dict[str, Any], source: str) -> TypePrompts:
    texts = {}
    for key, names in PLACEHOLDERS[score_type].items():
        value = section.get(key) or ""
        if not isinstance(value, str):
            raise DeitaError(f"{source}: {score_type}.{key}: expected a text, got {quote(value)}")
        missing = [name for name in names if "{" + name + "}" not in value]
        if missing:
            raise DeitaError(f"{source}: {score_type}.{key} lacks the placeholder "
                             f"{', '.join('{' + m + '}' for m in missing)}")
        texts[key] = value
    operations = section.get("operations")
    if not isinstance(operations, dict) or not operations:
        raise DeitaError(f"{source}: {score_type}.operations: expected a mapping of name: text, at least one")
    for name, text in operations.items():
        if not isinstance(text, str) or not text.strip():
            raise DeitaError(f"{source}: {score_type}.operations[{quote(name)}]: expected a non-empty text")
    return TypePrompts(texts["system"], texts["evolve"], tuple((str(k), v) for k, v in operations.items()),
                       texts["rank"], texts["variant"])
