"""`SelectConfig`: every setting of `deita select`, loaded in layers (defaults, preset, YAML file, flags).

A preset fills in what the user did not write; each key the user wrote wins over the preset's. The scorer
roles (complexity, quality) are decided per role: a role the preset scores by length is scored by a model
as soon as the user writes its section, so `preset: offline` with `quality: {backend: openai, ...}` scores
quality through that server and complexity by length. `scorer_for` tells the pipeline which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deita.config import Config, config_to_dict, option
from deita.config_layers import Layer, Layered
from deita.config_yaml import read_yaml
from deita.dedup.config import DecontaminateConfig, DedupConfig
from deita.embedding.embedder import EmbedConfig
from deita.errors import ConfigError, quote
from deita.report.config import ReportConfig
from deita.runtime.options import RunOptions
from deita.scoring.config import ScoreConfig
from deita.scoring.signals import QUALITY_FIELD
from deita.selection.config import FilterConfig
from deita.selection.ifd import IFD_KEY
from deita.selection.scores import DEFAULT_SCORE_KEYS, LENGTH_SCORE_KEYS
from deita.selection.strategies import STRATEGIES

PRESETS = ("paper", "offline")
DEFAULT_PRESET = "paper"
SECTIONS = ("dedup", "decontaminate", "complexity", "quality", "ifd", "embed", "filter", "report", "run")
ROLES = ("complexity", "quality")
"""The scorer sections: each scores its own type, by a model or (when a preset says so) by length."""
PRESET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"embed": {"kind": "causal"}},
    "offline": {"embed": {"kind": "static"}, "filter": {"threshold": 0.99}},
}
"""What each preset changes from the defaults: declared once, here. The offline threshold is calibrated for the
static embedder's scale of cosine similarity (benchmarks/offline.py, docs/benchmarks.md): whole-conversation
means of static token vectors sit closer together than MiniLM's sentence embeddings, so 0.9 would skip most
of a pool; the calibrated value skips ≥ 95 % of planted near-copies and about as many real records as MiniLM
does at 0.9. It belongs to that embedder: with another `embed.kind` written by the user it does not apply."""
LENGTH_ROLES: dict[str, tuple[str, ...]] = {"paper": (), "offline": ("complexity",)}
"""The roles each preset scores by length (the paper's length baselines) unless the user writes their section."""
SIGNAL_ROLES: dict[str, tuple[str, ...]] = {"paper": (), "offline": ("quality",)}
"""The roles each preset scores with the offline quality signals (`ScoreConfig(type="signals")`) unless the user
writes their section: the offline ranking is Σ over turns of instruction length × response length × the signals'
quality gate (`scoring/signals.py`), so a long answer that is cut off, off-topic, garbled or a refusal sinks."""
ROLE_SCORE_KEYS = dict(zip(ROLES, DEFAULT_SCORE_KEYS, strict=True))
ROLE_LENGTH_KEYS = dict(zip(ROLES, LENGTH_SCORE_KEYS, strict=True))


@dataclass
class SelectConfig(Config):
    """The whole pipeline's settings; a YAML file has one section per field (`complexity:`, `embed:`, …).

    Built directly, a scorer section that differs from its default counts as written by the user; `build`
    records exactly the sections the file and the flags wrote.
    """

    preset: str = option(DEFAULT_PRESET, "paper: Deita scorers and Mistral-7B embeddings (needs the models, a GPU); "
                         "offline: length scores gated by cheap quality signals and a static embedder distilled "
                         "from MiniLM (no network or GPU); a section you write wins over the preset's.",
                         choices=PRESETS)
    dedup: DedupConfig = option(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = option(default_factory=DecontaminateConfig)
    complexity: ScoreConfig = option(default_factory=lambda: ScoreConfig(type="complexity"))
    quality: ScoreConfig = option(default_factory=lambda: ScoreConfig(type="quality"))
    ifd: ScoreConfig | None = option(None, "IFD scorer (instruction-following difficulty; keys as the flags of "
                                     "`deita score --type ifd`): any causal LM, run in the pass through the same "
                                     "engine and backends; strategy ifd ranks by it. Absent unless written.",
                                     cli=False)
    embed: EmbedConfig = option(default_factory=lambda: EmbedConfig(kind="causal"))
    filter: FilterConfig = option(default_factory=FilterConfig)
    report: ReportConfig = option(default_factory=ReportConfig)
    run: RunOptions = option(default_factory=RunOptions)
    user_sections: frozenset[str] | None = option(None, "The sections the user wrote (recorded by `build`).",
                                                  internal=True)

    def __post_init__(self) -> None:
        if isinstance(self.ifd, Mapping) and "type" not in self.ifd:
            object.__setattr__(self, "ifd", {"type": "ifd", **self.ifd})  # the section's scorer type is its name
        super().__post_init__()
        if self.user_sections is None:
            defaults = {f.name: f.default_factory() for f in dataclasses.fields(self) if f.name in ROLES}
            object.__setattr__(self, "user_sections",
                               frozenset(role for role, default in defaults.items() if getattr(self, role) != default))

    def check(self) -> None:
        for role in ROLES:
            scorer = getattr(self, role)
            if scorer.type != role and not (role == "quality" and scorer.type == "signals"):
                raise ConfigError(f"{quote(scorer.type)} in the {role} section: a {role} section scores {role} "
                                  f"(the {scorer.type} scorer goes under {scorer.type}:)", [f"{role}.type"])
        if self.ifd is not None and self.ifd.type != "ifd":
            raise ConfigError(f"{quote(self.ifd.type)} in the ifd section: the ifd section scores ifd (the "
                              f"{self.ifd.type} scorer goes under {self.ifd.type}:)", ["ifd.type"])
        if self.ranks_by_ifd() and self.ifd is None:
            raise ConfigError("strategy ifd ranks records by their IFD, which needs a scorer: set model to any "
                              "causal LM (hub id, folder or .gguf file)", ["filter.strategy", "ifd.model"],
                              rule=True, usage=True)

    @classmethod
    def from_yaml(cls, path: str | Path) -> dict[str, Any]:
        """The sections of a YAML config file, as a mapping (checked when the config is built)."""
        data = read_yaml(path)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping of sections ({', '.join(SECTIONS)}), got {quote(data)}",
                              where=str(path))
        return data

    @classmethod
    def build(cls, data: Mapping[str, Any], source: str = "config", flags: Layer | None = None,
              device: str | None = None) -> SelectConfig:
        """Defaults ← the preset's ← `data`'s sections (from `source`) ← `flags`; `device` (the flag) goes to
        every section in use. Unknown sections, keys, wrong types and contradictions are ConfigErrors."""
        sections = {name: ({} if value is None and name in SECTIONS else value) for name, value in data.items()}
        user = [Layer(source, sections), *([flags] if flags is not None else [])]
        written = Layered()
        for layer in user:
            written.add(cls, layer)
        preset = written.values.get("preset", DEFAULT_PRESET)
        if preset not in PRESETS:
            raise written.locate(ConfigError(f"{quote(preset)} is not one of {', '.join(PRESETS)}", ["preset"]))
        user_sections = frozenset(name for name in SECTIONS if written.user_wrote(name))
        layers = [Layer(f"preset {preset}", _preset_layer(preset, written), user=False), *user]
        if device is not None:
            in_use = ["embed", "filter", *(r for r in ROLES if r not in LENGTH_ROLES[preset] or r in user_sections),
                      *(["ifd"] if "ifd" in user_sections else [])]
            layers.insert(2, Layer("", {name: {"device": device} for name in in_use}, lambda _: "--device"))
        merged = Layered(default_label=flags.label if flags is not None else layers[-1].label)
        for layer in layers:
            merged.add(cls, layer)
        config = merged.build(cls)
        return dataclasses.replace(config, user_sections=user_sections)

    def preset_scores(self, role: str) -> bool:
        """Whether the preset's own scores (length or signals) stand in for `role`'s section."""
        return role not in (self.user_sections or ()) and role in (*LENGTH_ROLES[self.preset],
                                                                    *SIGNAL_ROLES[self.preset])

    def scorer_for(self, role: str) -> ScoreConfig | None:
        """The scorer of `role` (complexity or quality): None where the preset's length scores stand in, the
        offline signals where the preset scores the role with them."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {quote(role)}")
        if not self.preset_scores(role):
            return getattr(self, role)
        if role in LENGTH_ROLES[self.preset]:
            return None
        return ScoreConfig(type="signals", device=getattr(self, role).device)

    def ranks_by_ifd(self) -> bool:
        """Whether the strategy ranks by IFD (then the roles' scores would rank nothing, and are not computed)."""
        return STRATEGIES[self.filter.strategy].ifd

    def role_scorers(self) -> dict[str, ScoreConfig | None]:
        """Each role the pass scores → its scorer (None: length scores stand in); none when IFD ranks."""
        return {} if self.ranks_by_ifd() else {role: self.scorer_for(role) for role in ROLES}

    def length_scored(self) -> bool:
        """Whether the pass writes the length scores (a role scored by length)."""
        return any(scorer is None for scorer in self.role_scorers().values())

    def pass_scorers(self) -> list[ScoreConfig]:
        """Every scorer the pass runs, in the order their fields are added: the roles', then IFD's."""
        scorers = [scorer for scorer in self.role_scorers().values() if scorer is not None]
        return scorers + ([self.ifd] if self.ifd is not None else [])

    def sort_key(self) -> tuple[str, ...]:
        """The filter's sort key: `ifd_scores` when IFD ranks; else the one written, else per role its scores,
        its length field, or (the offline signals) the response length and the signals' gate."""
        if self.ranks_by_ifd():
            return (IFD_KEY,)
        if self.filter.sort_key:
            return self.filter.sort_key
        keys: list[str] = []
        for role in ROLES:
            scorer = self.scorer_for(role)
            if scorer is None:
                keys.append(ROLE_LENGTH_KEYS[role])
            elif scorer.type == "signals":
                keys += [ROLE_LENGTH_KEYS[role], QUALITY_FIELD]
            else:
                keys.append(ROLE_SCORE_KEYS[role])
        return tuple(keys)

    def threshold_note(self) -> str:
        """How the diversity threshold was chosen, in a sentence for the report."""
        tau = self.filter.threshold
        preset = PRESET_DEFAULTS[self.preset].get("filter", {}).get("threshold")
        if preset is not None and tau == preset and self.embed.kind == PRESET_DEFAULTS[self.preset]["embed"]["kind"]:
            return (f"τ = {tau} is the {self.preset} preset's, calibrated for its {self.embed.kind} embedder, whose "
                    "cosines crowd near 1. On 4,905 real ShareGPT records with dedup off, it skips all of the "
                    "probe's planted exact copies and 99.6–100 % of its near copies (seeds 0–2), 99.7 % of harder "
                    "near-copies (a changed name, a reordered list), and 159 real records (3.2 %), about as many "
                    "as MiniLM at 0.9; 0.98 skips twice as many real records and catches no more copies, a threshold "
                    "halfway to 1 keeps 47 more and misses at most 0.4 % more near copies (benchmarks/threshold.py, "
                    "benchmarks/offline.py, docs/offline.md). In a run, dedup removes exact and near copies of "
                    "whole records before this.")
        if tau == FilterConfig().threshold:
            return f"τ = {tau} is the paper's, for its embedder (Mistral-7B or MiniLM scale)."
        return f"τ = {tau} was set in the config or with --threshold."

    def with_filter_defaults(self) -> SelectConfig:
        """This config with the filter's budget tokenizer (the scorer's, else the embedder's) and source field (the
        report's) filled in where the user left them out, so the run and its manifest use the same."""
        updates: dict[str, Any] = {}
        if self.filter.token_budget is not None and not self.filter.budget_tokenizer:
            scorer = self.ifd if self.ranks_by_ifd() else self.scorer_for("quality") or self.scorer_for("complexity")
            updates["budget_tokenizer"] = scorer.resolved_model() if scorer else self.embed.resolved_model()
        if self.filter.source_field is None and self.report.source_field is not None:
            updates["source_field"] = self.report.source_field
        return dataclasses.replace(self, filter=dataclasses.replace(self.filter, **updates)) if updates else self

    def effective(self) -> dict[str, Any]:
        """The effective config as plain data (what OUTPUT.config.yaml and the manifest record): the options
        in use only, and no section for a role scored by length (or by nothing, when IFD ranks) nor an absent
        ifd section, so a rerun from it scores the same."""
        data = config_to_dict(self, effective=True)
        for role in ROLES:
            if self.preset_scores(role) or self.ranks_by_ifd():
                del data[role]
        if self.ifd is None:
            del data["ifd"]
        return data

    def to_yaml(self) -> str:
        """The effective config as YAML."""
        return yaml.safe_dump(self.effective(), sort_keys=False, allow_unicode=True)

    def models_used(self) -> list[tuple[str, str]]:
        """(role, model id or folder) of every model this run loads, the packaged default embedder included."""
        scorers = [(f"{role} {'signals' if scorer.type == 'signals' else 'scorer'}", scorer.resolved_model())
                   for role, scorer in self.role_scorers().items() if scorer is not None]
        if self.ifd is not None:
            scorers.append(("ifd scorer", self.ifd.resolved_model()))
        return [*scorers, ("embedding model", self.embed.resolved_model())]


def _preset_layer(preset: str, written: Layered) -> dict[str, dict[str, Any]]:
    """The preset's settings, less a filter threshold calibrated for an embedder the user replaced."""
    layer = {name: dict(values) for name, values in PRESET_DEFAULTS[preset].items()}
    kind = written.values.get("embed", {}).get("kind")
    if kind is not None and kind != layer.get("embed", {}).get("kind"):
        layer.get("filter", {}).pop("threshold", None)
    return layer
