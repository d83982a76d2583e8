"""The packaged prompts, `--prompts` overrides and placeholder filling."""

from __future__ import annotations

import pytest

from deita.errors import DeitaError
from deita.evol.prompts import fill, load_prompts


def test_default_prompts_hold_five_operations_per_type_in_the_papers_order():
    prompts = load_prompts()
    assert [name for name, _ in prompts.complexity.operations] == [
        "add_constraint", "deepen", "concretize", "add_reasoning", "complicate_input"]
    assert [name for name, _ in prompts.quality.operations] == [
        "helpfulness", "relevance", "depth", "creativity", "detail"]
    assert prompts.complexity.messages("hi") == [{"role": "user", "content": "hi"}]
    rendered = fill(prompts.complexity.rank, count="6", variants="[1] ...")
    assert '{"scores": [s1, s2, ...]}' in rendered and "{count}" not in rendered and "from 1 (least complex) to 6" \
        in rendered


def test_fill_replaces_only_its_names_and_never_rereads_what_it_put_in():
    assert fill('{a} {"b": 1} {c}', a="{c}", c="x") == '{c} {"b": 1} x'
    assert fill("{", a="1") == "{" and fill("}{a", a="1") == "}{a"


def test_an_override_file_replaces_keys_and_keeps_the_rest(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text("quality:\n  system: You are terse.\n  operations:\n    shorter: Make it shorter.\n")
    prompts = load_prompts(path)
    assert prompts.quality.system == "You are terse." and prompts.quality.operations == (("shorter",
                                                                                         "Make it shorter."),)
    assert prompts.quality.operation(3) == ("shorter", "Make it shorter."), "fewer operations than steps: cycled"
    assert prompts.complexity == load_prompts().complexity
    assert prompts.digest("quality") != load_prompts().digest("quality")
    assert prompts.digest("complexity") == load_prompts().digest("complexity")


@pytest.mark.parametrize("text, message", [
    ("complexity:\n  evolv: x\n", "unknown key 'evolv' (did you mean 'evolve'?)"),
    ("complexity:\n  evolve: Rewrite {instruction}\n", "complexity.evolve lacks the placeholder {operation}"),
    ("quality:\n  rank: '{count} {variants}'\n", "quality.rank lacks the placeholder {instruction}"),
    ("quality:\n  operations: {}\n", "quality.operations: expected a mapping"),
    ("qualty: {}\n", "did you mean 'quality'"),
    ("complexity: [1]\n", "expected a mapping of templates"),
    ("complexity: {evolve: \n", "not valid YAML"),
])
def test_bad_override_files_are_one_line_errors_naming_the_key(tmp_path, text, message):
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    with pytest.raises(DeitaError, match="prompts.yaml") as err:
        load_prompts(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DeitaError, match="prompts file .* not found"):
        load_prompts(tmp_path / "missing.yaml")
