"""Configs through the installed `deita`: the same one-line error as the Python API and the YAML file, a
hostile YAML file refused, every numeric flag out of range a one-line error, the tables in `--help`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from builders import sharegpt, write_jsonl

from deita.cli import main
from deita.cli.app import COMMANDS, app
from deita.dedup.config import DecontaminateConfig
from deita.embedding.embedder import EMBEDDERS
from deita.errors import ConfigError
from deita.scoring.backends import BACKENDS
from deita.scoring.config import ScoreConfig
from deita.select_config import SelectConfig
from deita.selection.config import FilterConfig
from deita.selection.strategies import STRATEGIES

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def deita(*args) -> subprocess.CompletedProcess:
    return subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0][len("error: "):]


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pool.jsonl", [sharegpt(("human", f"q{i}"), ("gpt", f"a{i}"), id=i) for i in range(4)])


STRATEGY = "'nope' is not one of deita, random, score, length, kcenter, ifd"


@pytest.mark.parametrize("api, section, command, expected", [
    (lambda: FilterConfig(strategy="nope"), {"filter": {"strategy": "nope"}}, ("filter", "--strategy", "nope"),
     (f"FilterConfig: strategy: {STRATEGY}", f"filter.strategy: {STRATEGY}", f"--strategy: {STRATEGY}")),
    (lambda: ScoreConfig(batch_tokens=0), {"complexity": {"batch_tokens": 0}}, ("score", "--batch-tokens", "0"),
     ("ScoreConfig: batch_tokens: 0 is out of range (must be at least 1)",
      "complexity.batch_tokens: 0 is out of range (must be at least 1)",
      "--batch-tokens: 0 is out of range (must be at least 1)")),
    (lambda: DecontaminateConfig(ngram=8, min_ngram=9), {"decontaminate": {"ngram": 8, "min_ngram": 9}},
     ("decontaminate", "--ngram", "8", "--min-ngram", "9", "--against", "EVAL"),
     ("DecontaminateConfig: min_ngram (9) is larger than ngram (8)",
      "decontaminate.min_ngram (9) is larger than decontaminate.ngram (8)",
      "--min-ngram (9) is larger than --ngram (8)")),
])
def test_python_yaml_and_flags_get_the_same_error(tmp_path, data, api, section, command, expected):
    """The same check and text everywhere; only how the option is named follows where it was written."""
    with pytest.raises(ConfigError) as err:
        api()
    from_api, from_yaml, from_flags = expected
    assert str(err.value) == from_api
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(section))
    assert one_line_error(deita("select", data, "-o", tmp_path / "sel.jsonl", "--config", tmp_path / "run.yaml")) \
        == f"{tmp_path / 'run.yaml'}: {from_yaml}"
    name, *flags = (str(data) if part == "EVAL" else part for part in command)
    assert one_line_error(deita(name, data, "-o", tmp_path / "out.jsonl", *flags)) == from_flags
    assert not (tmp_path / "sel.jsonl.work").exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", [
    ("select", "DATA", "-o", "OUT/sel.jsonl", "--config", "BOMB"),
    ("train", "sft", "DATA", "-o", "OUT/sft", "--config", "BOMB"),
    ("evol", "complexity", "DATA", "-o", "OUT/evolved.jsonl", "--served-model", "m", "--prompts", "BOMB"),
    ("rank", "DATA", "-o", "OUT/ranked.jsonl", "--served-model", "m", "--prompts", "BOMB"),
])
def test_an_alias_bomb_is_a_one_line_config_error(tmp_path, data, command):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    args = [str(data) if a == "DATA" else str(bomb) if a == "BOMB" else a.replace("OUT", str(tmp_path / "out"))
            for a in command]
    line = one_line_error(deita(*args))
    assert line.startswith(f"{bomb}, line ") and "refused: expands to more than 100,000 values" in line
    assert len(line) < 300


def test_a_self_referencing_or_deep_config_is_refused_too(tmp_path, data):
    for text, problem in [("filter: &f {size: *f}\n", "a value contains itself"),
                          ("filter: " + "[" * 100 + "]" * 100 + "\n", "nested more than 64 levels deep")]:
        (tmp_path / "run.yaml").write_text(text)
        assert problem in one_line_error(deita("select", data, "-o", tmp_path / "o.jsonl", "--config",
                                               tmp_path / "run.yaml"))


# ---------------------------------------------------------------- every numeric flag of every command


def leaf_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name in COMMANDS:
        command = app.get_command(click.Context(app), name)
        subs = getattr(command, "commands", None)
        out += [((name, sub), cmd) for sub, cmd in subs.items()] if subs else [((name,), command)]
    return out


def numeric_flags() -> list[tuple[tuple[str, ...], str, str]]:
    cases = []
    for path, command in leaf_commands():
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, (click.types.IntParamType,
                                                                            click.types.FloatParamType)):
                bad = ["-1000000", str(2**70)] if isinstance(param.type, click.types.IntParamType) \
                    else ["-1e9", "inf", "nan"]
                cases += [(path, param.opts[0], value) for value in bad]
    return cases


def required_args(path: tuple[str, ...], tmp: Path, data: Path) -> list[str]:
    out = str(tmp / "out" / ("emb.npy" if path == ("embed",) else "result.jsonl"))
    extra = {"convert": ["--to", "alpaca"], "decontaminate": ["--against", str(data)],
             "report": ["--pool", str(data)], "validate": []}.get(path[0], [])
    if path == ("serve",):
        return []
    return [str(data), *([] if path == ("validate",) else ["-o", out]), *extra]


@pytest.mark.parametrize("path, flag, value", numeric_flags(), ids=lambda v: " ".join(v) if isinstance(v, tuple)
                         else str(v))
def test_every_numeric_flag_out_of_range_is_one_line_naming_it(tmp_path, data, capsys, path, flag, value):
    with pytest.raises(SystemExit) as done:
        main([*path, *required_args(path, tmp_path, data), flag, value])
    err = capsys.readouterr().err
    assert done.value.code == (2 if flag == "--seed" else 1) and "Traceback" not in err, err  # seeds: usage
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: ") and "out of range" in lines[0] \
        or "not a finite number" in lines[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, extra", [(("dpo-data",), ()), (("filter",), ()), (("select",), ("--preset", "offline")),
                                            (("train", "sft"), ("--model", "m")), (("probe",), ())])
def test_a_seed_out_of_range_is_a_usage_error_in_one_line(tmp_path, data, command, extra):
    out = tmp_path / "out" / "o.jsonl"
    line = one_line_error(deita(*command, data, "-o", out, *extra, "--seed", "-5"), code=2)
    assert line == "--seed: -5 is out of range (must be between 0 and 4294967295)"
    assert not out.parent.exists()


# ---------------------------------------------------------------- the extension tables


def test_help_lists_each_table_and_an_unknown_name_gets_the_nearest(tmp_path, data):
    for command, table in (("filter", STRATEGIES), ("score", BACKENDS), ("embed", EMBEDDERS)):
        shown = " ".join(deita(command, "--help").stdout.split())
        assert all(f"{name}:" in shown for name in table), (command, shown)
    line = one_line_error(deita("filter", data, "-o", tmp_path / "o.jsonl", "--strategy", "kcentre"))
    assert line == f"--strategy: 'kcentre' is not one of {', '.join(STRATEGIES)}; did you mean 'kcenter'?"
    line = one_line_error(deita("score", data, "-o", tmp_path / "o.jsonl", "--backend", "vlm"))
    assert line.endswith("did you mean 'vllm'?")
    assert one_line_error(deita("embed", data, "-o", tmp_path / "o.npy", "--kind", "statik")).endswith(
        "did you mean 'static'?")
    typo = tmp_path / "pool.jsnl"
    typo.write_bytes(data.read_bytes())
    assert "unknown file type '.jsnl' (did you mean '.jsonl'?" in one_line_error(deita("validate", typo))


def test_each_backend_of_the_table_has_its_options_section():
    config = ScoreConfig()
    assert all(isinstance(getattr(config, name), backend.Options) for name, backend in BACKENDS.items())
    assert SelectConfig.build({"quality": {"backend": "vllm", "vllm": {"max_logprobs": 5}}}).quality.vllm.max_logprobs \
        == 5
