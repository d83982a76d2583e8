"""The config layer: every config checks itself when built (Python, YAML and flags meet the same error), the
one layered loader (presets, files, flags), bounded YAML, short quoting, credentials never saved."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest
import yaml

import deita.evol.config
import deita.pipeline
import deita.training.scorer
import deita.workflow  # noqa: F401  (imports every config module)
from deita.config import Config, config_from_mapping, field_types, redact_url
from deita.config_layers import Layer, build_layered
from deita.config_yaml import parse_yaml, read_yaml
from deita.dedup.config import DecontaminateConfig
from deita.errors import ConfigError, DeitaError, quote
from deita.scoring.config import ScoreConfig
from deita.select_config import SelectConfig
from deita.selection.config import FilterConfig


def config_classes() -> list[type]:
    """Every config dataclass declared with `option()` (the seed-compatible Pipeline options excluded)."""
    found, todo = set(), [Config]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return sorted((c for c in found if dataclasses.is_dataclass(c) and c.__module__ != "deita.pipeline"),
                  key=lambda c: c.__qualname__)


def leaf_type(tp):
    """`int` for `int | None` and the like."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def wrong_value(tp):
    tp = leaf_type(tp)
    if typing.get_origin(tp) is tuple:
        return 5
    return {str: 5, int: "x", float: "x", bool: "yes"}.get(tp, 5)


def fields_of(kind: str) -> list[tuple[type, dataclasses.Field]]:
    out = []
    for cls in config_classes():
        hints = field_types(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            tp = leaf_type(hints[f.name])
            if kind == "choices" and f.metadata.get("choices") is not None \
                    or kind == "numeric" and tp in (int, float) or kind == "all":
                out.append((cls, f))
    return out


def ids(pairs):
    return [f"{cls.__name__}.{f.name}" for cls, f in pairs]


# ---------------------------------------------------------------- every config checks itself when built


@pytest.mark.parametrize("cls, f", fields_of("choices"), ids=ids(fields_of("choices")))
def test_every_enumeration_refuses_an_unknown_name_with_the_nearest(cls, f):
    valid = list(f.metadata["choices"])
    typo = max(valid, key=len) + "x"
    with pytest.raises(ConfigError) as err:
        cls(**{f.name: typo})
    assert isinstance(err.value, DeitaError) and isinstance(err.value, ValueError)
    assert str(err.value).startswith(f"{cls.__name__}: {f.name}: '{typo}' is not one of {', '.join(valid)}")
    assert "did you mean" in str(err.value)


@pytest.mark.parametrize("cls, f", fields_of("numeric"), ids=ids(fields_of("numeric")))
def test_every_number_declares_a_range_and_refuses_what_is_out_of_it(cls, f):
    low, high = f.metadata.get("min"), f.metadata.get("max")
    assert low is not None, f"{cls.__name__}.{f.name} declares no lower bound"
    tp = leaf_type(field_types(cls)[f.name])
    below = tp(low) - (1 if tp is int else 1e-6 + abs(low))
    outside = [below, 2**70] if tp is int else [below, float("nan"), float("inf")]
    if high is not None:
        outside.append(tp(high) + (1 if tp is int else 1.0))
    for value in outside:
        if value in f.metadata.get("allow", ()):
            continue
        with pytest.raises(ConfigError, match=rf"^{cls.__name__}: {f.name}: .*(out of range|not a finite)"):
            cls(**{f.name: value})


@pytest.mark.parametrize("cls, f", fields_of("all"), ids=ids(fields_of("all")))
def test_every_option_refuses_a_value_of_the_wrong_type(cls, f):
    with pytest.raises(ConfigError, match=rf"^{cls.__name__}: {f.name}: expected "):
        cls(**{f.name: wrong_value(field_types(cls)[f.name])})


@pytest.mark.parametrize("build, message", [
    (lambda: ScoreConfig(type="bogus"), "ScoreConfig: type: 'bogus' is not one of complexity, quality"),
    (lambda: FilterConfig(strategy="nope"), "FilterConfig: strategy: 'nope' is not one of deita, random"),
    (lambda: ScoreConfig(batch_tokens=100, max_length=200),
     "ScoreConfig: batch_tokens (100) must be at least max_length (200)"),
    (lambda: DecontaminateConfig(ngram=8, min_ngram=9), "DecontaminateConfig: min_ngram (9) is larger than ngram (8)"),
    (lambda: deita.training.config.DPOConfig(max_length=512, max_prompt_length=512),
     "DPOConfig: max_prompt_length (512) leaves no room for the answer within max_length (512)"),
    (lambda: deita.training.config.SFTConfig(qlora=True), "SFTConfig: qlora trains LoRA adapters on a 4-bit base"),
    (lambda: SelectConfig.build({"quality": {"type": "complexity"}}),
     "config: quality.type: 'complexity' in the quality section: a quality section scores quality"),
    (lambda: SelectConfig(quality=ScoreConfig(type="complexity")), "SelectConfig: quality.type: 'complexity' in"),
    (lambda: SelectConfig(filter={"size": 0}), "SelectConfig: filter.size: 0 is out of range"),
    (lambda: ScoreConfig(openai={"concurency": 2}), "ScoreConfig: openai: unknown key 'concurency' (did you mean"),
    (lambda: deita.evol.config.EvolConfig(steps=6), "EvolConfig: steps: 6 is out of range (must be between 1 and 5)"),
    (lambda: deita.pipeline.Pipeline("score_pipeline", data_path="a", output_path="b", scorer_name_or_path="m",
                                     score_type="qualty").options.score_config(),
     "Pipeline('score_pipeline'): score_type: 'qualty' is not one of complexity, quality"),
])
def test_the_python_api_is_refused_at_once_naming_the_class_and_option(build, message):
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_valid_config_is_coerced_once_and_replace_checks_again():
    config = FilterConfig(threshold=1, sort_key=["a", "b"])
    assert config.threshold == 1.0 and isinstance(config.threshold, float) and config.sort_key == ("a", "b")
    with pytest.raises(ConfigError, match="size: 0 is out of range"):
        dataclasses.replace(config, size=0)
    nested = config_from_mapping(ScoreConfig, {"backend": "openai", "openai": {"served_model": "m"}})
    assert nested.openai.served_model == "m" and nested.openai.concurrency == 16
    assert ScoreConfig(openai={"served_model": "m"}).openai.served_model == "m"


# ---------------------------------------------------------------- the one layered loader


def test_layers_are_merged_before_the_config_is_built_so_no_mix_of_two_layers_is_checked():
    """The file raises max_length past the default batch budget, the flag raises the budget: fine together."""
    config = build_layered(ScoreConfig, [Layer("run.yaml", {"max_length": 40000}),
                                         Layer("", {"batch_tokens": 80000}, lambda p: "--" + p.replace("_", "-"))])
    assert (config.max_length, config.batch_tokens) == (40000, 80000)
    with pytest.raises(ConfigError) as err:
        build_layered(ScoreConfig, [Layer("run.yaml", {"max_length": 40000}),
                                    Layer("", {"batch_tokens": 30000}, lambda p: "--" + p.replace("_", "-"))])
    assert str(err.value) == "--batch-tokens (30000) must be at least max_length (40000)"


def test_an_error_names_the_option_as_its_layer_spells_it():
    flag = Layer("", {"filter": {"size": 0}}, lambda path: "--" + path.rpartition(".")[2])
    with pytest.raises(ConfigError, match=r"^--size: 0 is out of range \(must be at least 1 or -1\)$"):
        SelectConfig.build({}, "run.yaml", flag)
    with pytest.raises(ConfigError, match=r"^run.yaml: filter.size: 0 is out of range"):
        SelectConfig.build({"filter": {"size": 0}}, "run.yaml")
    with pytest.raises(ConfigError, match=r"^run.yaml: filter: unknown key 'treshold' \(did you mean 'threshold'"):
        SelectConfig.build({"filter": {"treshold": 0.5}}, "run.yaml")
    with pytest.raises(ConfigError, match=r"^run.yaml: unknown key 'qualty' \(did you mean 'quality'"):
        SelectConfig.build({"qualty": {}}, "run.yaml")


def test_a_section_the_user_wrote_wins_over_the_preset_per_role():
    server = {"backend": "openai", "model": "tok", "openai": {"base_url": "http://127.0.0.1:9/v1"}}
    config = SelectConfig.build({"preset": "offline", "quality": server})
    assert config.scorer_for("complexity") is None, "no complexity section: the preset's length score"
    quality = config.scorer_for("quality")
    assert quality is not None and quality.backend == "openai" and quality.type == "quality"
    assert config.sort_key() == ("instruction_lengths", "quality_scores")
    assert [role for role, _ in config.models_used()] == ["quality scorer", "embedding model"]
    assert config.embed.kind == "static" and config.filter.threshold == 0.99, "the rest of the preset stands"
    saved = yaml.safe_load(config.to_yaml())
    assert "complexity" not in saved and saved["quality"]["backend"] == "openai"
    again = SelectConfig.build(saved)
    assert again.scorer_for("complexity") is None and again.scorer_for("quality") == quality

    offline = SelectConfig.build({"preset": "offline"})
    # no quality section: the preset's offline signals gate the length scores (issue 22)
    assert offline.scorer_for("complexity") is None and offline.scorer_for("quality").type == "signals"
    assert offline.sort_key() == ("instruction_lengths", "response_lengths", "offline_quality_scores")
    assert [role for role, _ in offline.models_used()] == ["quality signals", "embedding model"]
    assert "quality" not in yaml.safe_load(offline.to_yaml())
    assert SelectConfig.build(yaml.safe_load(offline.to_yaml())).scorer_for("quality").type == "signals"
    assert SelectConfig.build({"preset": "offline", "quality": {}}).scorer_for("quality").type == "quality"
    paper = SelectConfig.build({})
    assert paper.scorer_for("complexity").type == "complexity" and paper.sort_key() == ("complexity_scores",
                                                                                        "quality_scores")
    direct = SelectConfig(preset="offline", quality=ScoreConfig(type="quality", backend="openai"))
    assert direct.scorer_for("quality").backend == "openai" and direct.scorer_for("complexity") is None


def test_the_preset_threshold_goes_with_its_embedder():
    assert SelectConfig.build({"preset": "offline", "embed": {"model": "dir"}}).filter.threshold == 0.99
    assert SelectConfig.build({"preset": "offline", "embed": {"kind": "sentence"}}).filter.threshold == 0.9
    assert SelectConfig.build({"preset": "offline", "embed": {"kind": "sentence"},
                               "filter": {"threshold": 0.5}}).filter.threshold == 0.5


def test_two_settings_the_user_wrote_that_contradict_are_refused_naming_both():
    with pytest.raises(ConfigError) as err:
        SelectConfig.build({"filter": {"strategy": "random", "threshold": 0.8}}, "run.yaml")
    assert str(err.value) == ("run.yaml: filter.threshold (0.8) has no effect with filter.strategy 'random'; "
                              "drop one of them")
    flags = Layer("", {"filter": {"threshold": 0.8}}, lambda path: "--" + path.rpartition(".")[2])
    with pytest.raises(ConfigError, match=r"^--threshold \(0.8\) has no effect with filter.strategy 'random'"):
        SelectConfig.build({"filter": {"strategy": "random"}}, "run.yaml", flags)
    with pytest.raises(ConfigError, match=r"complexity.openai.+ has no effect with complexity.backend 'hf'"):
        SelectConfig.build({"complexity": {"backend": "hf", "openai": {"served_model": "m"}}})
    # the preset's settings are not the user's: a strategy that ignores the offline threshold is fine
    assert SelectConfig.build({"preset": "offline", "filter": {"strategy": "random"}}).filter.strategy == "random"
    # a flag that sets an option of several backends counts where one of them is in use
    shared = Layer("", {"openai": {"max_logprobs": 5}, "vllm": {"max_logprobs": 5}}, lambda _: "--max-logprobs")
    assert build_layered(ScoreConfig, [Layer("", {"backend": "openai"}), shared]).openai.max_logprobs == 5


# ---------------------------------------------------------------- YAML with limits, short quoting


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
"""Nine levels of ten aliases each: 360 bytes that expand to 10⁹ strings."""


def test_an_alias_bomb_and_other_oversized_yaml_are_one_line_config_errors(tmp_path):
    assert len(BOMB) < 500
    with pytest.raises(ConfigError, match=r"^bomb.yaml, line \d+: refused: expands to more than 100,000 values"):
        parse_yaml(BOMB, "bomb.yaml")
    with pytest.raises(ConfigError, match="refused: a value contains itself"):
        parse_yaml("a: &a [1, *a]\n", "loop.yaml")
    with pytest.raises(ConfigError, match="refused: nested more than 64 levels deep"):
        parse_yaml("[" * 200 + "]" * 200, "deep.yaml")
    with pytest.raises(ConfigError, match="refused: more than 1,000 alias uses"):
        parse_yaml("a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n", "many.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 1_000_001)
    with pytest.raises(ConfigError, match=r"big.yaml: larger than 1,000,000 bytes"):
        read_yaml(big)
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_yaml("a: " + "1" * 5000, "digits.yaml")
    shared = parse_yaml("server: &s {base_url: http://h/v1}\ncomplexity: {openai: *s}\nquality: {openai: *s}\n", "ok")
    assert shared["complexity"]["openai"] == shared["quality"]["openai"] == {"base_url": "http://h/v1"}


def test_errors_quote_at_most_80_characters_of_any_value():
    loop: list = []
    loop.append(loop)
    nested = [[["deep" * 50] * 10] * 10] * 10
    for value in ("y" * 10_000, loop, nested, 10**5000, {"k" * 500: nested}):
        assert len(quote(value)) <= 80
    for build in (lambda: FilterConfig(strategy="s" * 10_000), lambda: FilterConfig(threshold=loop),
                  lambda: FilterConfig(sort_key=nested), lambda: ScoreConfig(model=nested),
                  lambda: SelectConfig.build({"filter": {"strategy": nested}}, "run.yaml")):
        with pytest.raises(ConfigError) as err:
            build()
        assert len(str(err.value)) < 200, str(err.value)


# ---------------------------------------------------------------- credentials


@pytest.mark.parametrize("url, redacted", [
    ("http://user:key@host:8000/v1", "http://***@host:8000/v1"),
    ("http://u:p/ss@host/v1", "http://***@host/v1"),  # an unencoded "/" in the password
    ("user:key@host/v1", "***@host/v1"),  # no scheme
    ("http://host/v1?q=a@b", "http://host/v1?q=a@b"),  # an "@" in the query is not a credential
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
])
def test_redact_url_removes_credentials_only(url, redacted):
    assert redact_url(url) == redacted


def test_yaml_values_are_type_checked_and_ranges_checked_before_work():
    with pytest.raises(DeitaError, match="threshold: expected a number, got 'high'"):
        config_from_mapping(FilterConfig, {"threshold": "high"}, "run.yaml [filter]")
    with pytest.raises(DeitaError, match="did you mean 'size'"):
        config_from_mapping(FilterConfig, {"sise": 3}, "run.yaml [filter]")
    with pytest.raises(DeitaError, match=r"size: 0 is out of range \(must be at least 1 or -1\)"):
        config_from_mapping(FilterConfig, {"size": 0})
    assert config_from_mapping(FilterConfig, {"size": -1}).size == -1
    with pytest.raises(DeitaError, match="batch_tokens .* must be at least max_length"):
        config_from_mapping(ScoreConfig, {"batch_tokens": 100, "max_length": 200})


def test_budget_balance_and_aggregate_from_a_config_file() -> None:
    """The filter section takes token_budget, budget_tokenizer, max_share, source_field and aggregate, checked
    at build; select fills in the budget tokenizer (scorer's, else embedder's) and the report's source field."""
    from deita.errors import ConfigError
    from deita.select_config import SelectConfig

    with pytest.raises(ConfigError, match=r"^run.yaml: filter.max_share needs a record count") as caught:
        SelectConfig.build({"filter": {"size": -1, "max_share": 0.5}}, "run.yaml")
    assert caught.value.usage
    with pytest.raises(ConfigError, match=r"filter.aggregate: 'median' is not one of sum, mean, max"):
        SelectConfig.build({"filter": {"aggregate": "median"}}, "run.yaml")
    scored = SelectConfig.build({"preset": "offline", "quality": {"model": "/models/q"},
                                 "filter": {"size": 10, "token_budget": 5000}, "report": {"source_field": "lang"}},
                                "run.yaml").with_filter_defaults()
    assert (scored.filter.budget_tokenizer, scored.filter.source_field) == ("/models/q", "lang")
    offline = SelectConfig.build({"preset": "offline", "filter": {"size": -1, "token_budget": 5000,
                                                                  "aggregate": "mean"}}, "run.yaml")
    filled = offline.with_filter_defaults().filter
    assert filled.budget_tokenizer == offline.embed.resolved_model() and filled.aggregate == "mean"
    assert offline.with_filter_defaults().effective()["filter"]["token_budget"] == 5000
