"""The installed `deita` command, as a person runs it: exit codes, one-line errors, nothing lost, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from builders import scored_pool, sharegpt, write_jsonl

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")


def deita(*args, check=True, cwd=None, env=None):
    result = subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"deita {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def one_line_error(result, code: int = 1) -> str:
    """The run failed with `code` and printed exactly one `error:` line and no traceback."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def pool(n: int, long: bool = False) -> list[dict]:
    """Records in the shapes real ShareGPT has: role aliases, chats that open with the assistant, follow-ups."""
    filler = " and more detail" * (60 if long else 1)
    records = []
    for i in range(n):
        messages = [("gpt", f"(continued) part {i}")] if i % 5 == 4 else []
        messages += [("human" if i % 2 else "user", f"question {i}: explain topic {i % 7}{filler}"),
                     ("chatgpt" if i % 4 == 1 else "gpt", f"answer {i}{filler}")]
        if i % 3 == 0:
            messages += [("human", f"follow-up {i}"), ("gpt", f"more {i}")]
        records.append(sharegpt(*messages, id=f"r{i}"))
    return records


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- usage errors: short, exit 2


@pytest.mark.parametrize("args", [
    (),  # a bare deita
    ("select", "x.jsonl", "-o", "y.jsonl", "--bogus"),  # unknown option
    ("score", "x.jsonl"),  # missing -o
    ("filter", "x.jsonl", "-o", "y.jsonl", "--size", "many"),  # wrong type
    ("selekt", "x.jsonl"),  # unknown command
    ("score", "x.jsonl", "-o", "y.jsonl", "--score-token-ids", "1,two"),
])
def test_usage_errors_are_short_and_exit_2(args):
    result = deita(*args, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Usage: deita" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 4


def test_help_lists_commands_and_the_default_preset():
    out = deita("--help").stdout
    for command in ("validate", "convert", "score", "embed", "filter", "select", "dedup", "decontaminate"):
        assert command in out
    assert "Example" in deita("score", "--help").stdout
    select_help = deita("select", "--help").stdout
    assert "[default: paper]" in select_help and "--strategy" in select_help and "--threshold" in select_help


# ---------------------------------------------------------------- out of range, config and environment: exit 1


@pytest.mark.parametrize("flags, name", [
    (("--size", "0"), "size"), (("--threshold", "1.5"), "threshold"), (("--seed", "-1"), "seed"),
    (("--strategy", "best"), "strategy"), (("--shard-size", "0"), "--shard-size"),
])
def test_select_out_of_range_flags_fail_before_any_stage(tmp_path, flags, name):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    out = tmp_path / "out" / "sel.jsonl"
    line = one_line_error(deita("select", data, "-o", out, "--preset", "offline", *flags, check=False),
                          code=2 if flags[0] == "--seed" else 1)
    assert name in line
    assert not (tmp_path / "out").exists(), "no stage may run before the config is checked"


@pytest.mark.parametrize("yaml_text, expected", [
    ("filter:\n  threshold: high\n", "threshold: expected a number, got 'high'"),
    ("filter:\n  threshold: 1.5\n", "threshold: 1.5 is out of range"),
    ("filter: [1, 2]\n", "filter: expected a mapping of options, got [1, 2]"),
    ("filter:\n  treshold: 0.8\n", "did you mean 'threshold'"),
    ("filter: {size: 10\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("run:\n  on_error: maybe\n", "on_error: 'maybe' is not one of fail, skip"),
    ("preset: fast\n", "preset: 'fast' is not one of paper, offline"),
])
def test_config_file_errors_are_one_line(tmp_path, yaml_text, expected):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    (tmp_path / "run.yaml").write_text(yaml_text)
    preset = [] if yaml_text.startswith("preset") else ["--preset", "offline"]
    line = one_line_error(deita("select", data, "-o", tmp_path / "o.jsonl", *preset, "--config",
                                tmp_path / "run.yaml", check=False))
    assert expected in line and "run.yaml" in line


def test_missing_config_file_and_output_under_a_file(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    line = one_line_error(deita("select", data, "-o", tmp_path / "o.jsonl", "--config", tmp_path / "nope.yaml",
                                check=False))
    assert "nope.yaml: config file not found" in line
    (tmp_path / "out.txt").write_text("a file")
    line = one_line_error(deita("select", data, "-o", tmp_path / "out.txt" / "sel.jsonl", "--preset", "offline",
                                check=False))
    assert "out.txt is a file, not a folder" in line
    line = one_line_error(deita("score", data, "-o", tmp_path / "out.txt" / "s.jsonl", check=False))
    assert "out.txt is a file, not a folder" in line


def test_select_without_network_fails_fast_naming_the_offline_preset(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(4))
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    line = one_line_error(deita("select", data, "-o", tmp_path / "o.jsonl", check=False, env=env))
    assert "hkust-nlp/deita-complexity-scorer" in line and "--preset offline" in line and "local model folders" in line
    line = one_line_error(deita("select", data, "-o", tmp_path / "o.jsonl", check=False,
                                env={**env, "HF_HUB_OFFLINE": "1"}))
    assert "HF_HUB_OFFLINE" in line and "--preset offline" in line
    assert not (tmp_path / "o.jsonl.work").exists()


# ---------------------------------------------------------------- nothing lost


@pytest.mark.slow
def test_outputs_that_resolve_to_the_input_are_refused_and_the_input_is_untouched(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", pool(6))
    original = data.read_bytes()
    os.symlink(data, tmp_path / "link.jsonl")
    os.link(data, tmp_path / "hard.jsonl")
    for out in ("p.jsonl", "./p.jsonl", "link.jsonl", "hard.jsonl", str(data)):
        line = one_line_error(deita("select", "p.jsonl", "-o", out, "--preset", "offline", check=False, cwd=tmp_path))
        assert "input" in line
        one_line_error(deita("score", "p.jsonl", "-o", out, check=False, cwd=tmp_path))
        one_line_error(deita("convert", "p.jsonl", "-o", out, "--to", "messages", check=False, cwd=tmp_path))
    line = one_line_error(deita("filter", "p.jsonl", "-o", "st.jsonl", "--stats", "./st.jsonl", "--strategy", "random",
                                check=False, cwd=tmp_path))
    assert "--stats" in line and "--output" in line
    assert data.read_bytes() == original
    assert not (tmp_path / "st.jsonl").exists()


def test_rejects_file_that_is_the_input_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "out.jsonl.rejects.jsonl", pool(3))
    original = data.read_bytes()
    line = one_line_error(deita("score", data, "-o", tmp_path / "out.jsonl", "--on-error", "skip", check=False))
    assert "rejects file" in line
    assert data.read_bytes() == original


def test_broken_json_array_with_skip_loses_nothing(tmp_path):
    records = pool(20)
    text = "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n"
    broken = text.replace('"id": "r7", ', '"id": "r7",, ')
    assert broken != text
    data = tmp_path / "pool.json"
    data.write_text(broken)
    result = deita("convert", data, "-o", tmp_path / "out.jsonl", "--to", "messages", "--on-error", "skip")
    assert "converted 19 of 20 records" in result.stdout and "rejected 1 records" in result.stdout
    out = deita("select", data, "-o", tmp_path / "sel.jsonl", "--preset", "offline", "--size", "30", "--threshold", "1",
                "--on-error", "skip", "-q").stdout
    assert "rejected 1 of 20 records" in out and "selected 19 of 19" in out
    rejects = read_jsonl(tmp_path / "sel.jsonl.rejects.jsonl")
    assert [r["location"] for r in rejects] == ["index 7"]


def test_one_bad_record_never_aborts_a_skip_job(tmp_path):
    good = [json.dumps(r) for r in pool(6)]
    deep = '{"id": "deep", "conversations": [{"from": "human", "value": "q"}], "x": ' + "[" * 100000 + "]" * 100000 + "}"
    surrogate = json.dumps(sharegpt(("human", "bad \\ud800 text"), ("gpt", "a"))).replace("\\\\ud800", "\\ud800")
    big = json.dumps(sharegpt(("human", "q"), ("gpt", "a"), id="big"))[:-1] + ', "n": 18446744073709551616}'
    data = tmp_path / "pool.jsonl"
    data.write_text("\n".join([good[0], deep, good[1], surrogate, good[2], big, *good[3:]]) + "\n")
    out = tmp_path / "lengths.parquet"
    result = deita("select", data, "-o", tmp_path / "sel.jsonl", "--preset", "offline", "--size", "-1",
                   "--on-error", "skip", "-q")
    assert "rejected 2 of 9 records" in result.stdout, result.stdout
    reasons = {r["location"]: r["reason"] for r in read_jsonl(tmp_path / "sel.jsonl.rejects.jsonl")}
    assert "nested deeper" in reasons["line 2"] and "not valid Unicode" in reasons["line 4"]
    problems = deita("validate", data, check=False).stdout
    assert "line 2" in problems and "line 4" in problems and "2 problems found" in problems
    # a record Parquet cannot hold is a reject of a stage writing Parquet, not the end of the job
    result = deita("convert", data, "-o", out, "--to", "sharegpt", "--on-error", "skip")
    assert "converted 6 of 9 records" in result.stdout and "rejected 3 records" in result.stdout


def test_select_rejects_go_where_the_readme_says(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(5) + [sharegpt(("gpt", "an answer to nothing"))])
    out = tmp_path / "sel.jsonl"
    printed = deita("select", data, "-o", out, "--preset", "offline", "--on-error", "skip", "-q").stdout
    assert f"→ {out}.rejects.jsonl" in printed
    (reject,) = read_jsonl(Path(f"{out}.rejects.jsonl"))
    assert reject["location"] == "line 6" and "no user message" in reject["reason"]


def test_score_error_names_file_record_and_fix(tmp_path, tiny_llama):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(pool(1)[0]) + "\n{not json\n")
    result = deita("score", path, "-o", tmp_path / "out.jsonl", "--model", tiny_llama, "-q", check=False)
    line = one_line_error(result)
    assert "bad.jsonl, line 2" in line and "--on-error skip" in line and "out.jsonl.rejects.jsonl" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_score_skip_writes_rejects_and_counts_add_up(tmp_path, tiny_llama):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool(3)) + "{oops\n"
                    + json.dumps(sharegpt(("human", "a"), ("human", "b"))) + "\n")
    out = tmp_path / "out.jsonl"
    result = deita("score", path, "-o", out, "--model", tiny_llama, "--on-error", "skip", "-q")
    assert "rejected 2 records" in result.stdout
    scored = read_jsonl(out)
    rejects = read_jsonl(Path(str(out) + ".rejects.jsonl"))
    assert len(scored) + len(rejects) == 5
    assert [r["id"] for r in scored] == ["r0", "r1", "r2"]
    assert {r["location"] for r in rejects} == {"line 4", "line 5"}


@pytest.mark.slow
def test_score_resumes_after_kill_9_with_identical_output(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(600, long=True))
    args = ["score", data, "--model", tiny_llama, "--type", "quality", "--shard-size", "4", "-q"]
    deita(*args, "-o", tmp_path / "full.jsonl")

    out = tmp_path / "resumed.jsonl"
    cache = Path(str(out) + ".cache")
    process = subprocess.Popen([DEITA, *map(str, args), "-o", str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.rglob("*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(cache.rglob("*.npz")))
    assert 3 <= finished < 150, "the run must be killed part-way"
    assert not out.exists()
    result = deita(*args, "-o", out)
    assert f"{finished} of 150 shards resumed" in result.stdout
    assert out.read_text() == (tmp_path / "full.jsonl").read_text()


@pytest.mark.slow
def test_damaged_cache_shard_is_one_line_and_recomputed(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(12))
    out = tmp_path / "out.jsonl"
    args = ["score", data, "-o", out, "--model", tiny_llama, "--shard-size", "4", "-q"]
    deita(*args)
    first = out.read_text()
    shards = sorted(Path(str(out) + ".cache").rglob("*.npz"))
    shards[0].write_bytes(b"")
    shards[1].write_bytes(shards[1].read_bytes()[:100])
    result = deita(*args)
    assert "1 of 3 shards resumed" in result.stdout
    damaged = [line for line in result.stderr.splitlines() if "is damaged" in line]
    assert len(damaged) == 2 and "Traceback" not in result.stderr
    assert out.read_text() == first


@pytest.mark.slow
def test_changed_type_does_not_reuse_cache(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(6))
    out = tmp_path / "out.jsonl"
    deita("score", data, "-o", out, "--model", tiny_llama, "--type", "complexity", "-q")
    result = deita("score", data, "-o", out, "--model", tiny_llama, "--type", "quality", "-q")
    assert "resumed" not in result.stdout
    assert "quality_scores" in out.read_text()


def test_progress_lines_reach_a_log_file_while_running(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(40))
    log = tmp_path / "log.txt"
    with open(log, "w") as stderr:
        subprocess.run([DEITA, "score", str(data), "-o", str(tmp_path / "o.jsonl"), "--model", str(tiny_llama),
                        "--shard-size", "4", "--progress-interval", "0"], stderr=stderr, check=True,
                       capture_output=False, stdout=subprocess.DEVNULL)
    lines = [line for line in log.read_text().splitlines() if line.startswith("scoring complexity:")]
    assert len(lines) >= 5
    assert "records/s" in lines[-1] and "ETA" in lines[-1] and "% of the input" in lines[-1]


# ---------------------------------------------------------------- the pipeline by hand and at once


@pytest.mark.slow
def test_score_embed_filter_by_hand(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(30))
    deita("score", data, "-o", tmp_path / "c.jsonl", "--model", tiny_llama, "--type", "complexity", "-q")
    deita("score", tmp_path / "c.jsonl", "-o", tmp_path / "cq.jsonl", "--model", tiny_llama, "--type", "quality", "-q")
    deita("embed", tmp_path / "cq.jsonl", "-o", tmp_path / "emb.npy", "--kind", "causal", "--model", tiny_llama, "-q")
    embeddings = np.load(tmp_path / "emb.npy", mmap_mode="r")
    assert embeddings.shape == (30, 64) and embeddings.dtype == np.float16
    deita("filter", tmp_path / "cq.jsonl", "--embeddings", tmp_path / "emb.npy", "-o", tmp_path / "sel.jsonl",
          "--size", "10", "--threshold", "1.0", "--stats", tmp_path / "stats.json")
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["n_pool"] == 30 and stats["n_selected"] == 10 and stats["strategy"] == "deita"
    assert {"n_examined", "n_near_duplicates", "threshold", "seconds"} <= set(stats)
    selected = read_jsonl(tmp_path / "sel.jsonl")
    scored = {r["id"]: r for r in read_jsonl(tmp_path / "cq.jsonl")}
    finals = [sum(c * q for c, q in zip(r["complexity_scores"], r["quality_scores"], strict=True)) for r in selected]
    assert finals == sorted(finals, reverse=True)
    assert all(r == scored[r["id"]] for r in selected)


@pytest.mark.slow
def test_filter_and_select_obey_the_threshold(tmp_path):
    """A threshold that changes the selection: a filter that ignored --threshold fails here."""
    records = pool(12)
    for i in range(1, 12, 2):  # every odd record repeats its neighbour's words: a near-duplicate pair
        records[i] = {**records[i - 1], "id": f"dup{i}"}
    data = write_jsonl(tmp_path / "pool.jsonl", records)
    picks = {}
    for threshold in ("0.95", "1.0"):
        out = tmp_path / f"sel-{threshold}.jsonl"
        printed = deita("select", data, "-o", out, "--preset", "offline", "--size", "8", "--threshold", threshold,
                        "--no-dedup", "-q").stdout  # the copies are the point here: dedup would remove them
        picks[threshold] = [r["id"] for r in read_jsonl(out)]
        assert "skipped" in printed and "as near-duplicates" in printed
    assert not any(i.startswith("dup") for i in picks["0.95"])
    assert any(i.startswith("dup") for i in picks["1.0"])
    work = tmp_path / "sel-1.0.jsonl.work"
    for threshold, expect_dups in (("0.95", False), ("1.0", True)):
        out = tmp_path / f"f-{threshold}.jsonl"
        deita("filter", scored_pool(tmp_path / "sel-1.0.jsonl"), "--embeddings", work / "embeddings.npy", "-o", out, "--size", "8",
              "--threshold", threshold)
        assert any(r["id"].startswith("dup") for r in read_jsonl(out)) == expect_dups


def test_filter_rejects_mismatched_embeddings(tmp_path):
    scored = [{**r, "complexity_scores": [1.0] * (2 if i % 3 == 0 else 1),
               "quality_scores": [2.0] * (2 if i % 3 == 0 else 1)} for i, r in enumerate(pool(5))]
    data = write_jsonl(tmp_path / "s.jsonl", scored)
    np.save(tmp_path / "emb.npy", np.ones((4, 8), dtype=np.float16))
    result = deita("filter", data, "--embeddings", tmp_path / "emb.npy", "-o", tmp_path / "o.jsonl", check=False)
    line = one_line_error(result)
    assert "has 4 rows but" in line and "5 records" in line
    del scored[2]["quality_scores"]
    write_jsonl(data, scored)
    line = one_line_error(deita("filter", data, "--strategy", "score", "-o", tmp_path / "o.jsonl", check=False))
    assert "line 3" in line and "quality_scores" in line


@pytest.mark.slow
def test_select_offline_end_to_end_resume_and_refilter(tmp_path):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(40))
    out = tmp_path / "out" / "selected.jsonl"
    first = deita("select", data, "-o", out, "--size", "8", "--preset", "offline", "--strategy", "deita", "-q").stdout
    assert "offline preset" in first and "selected 8 of 40" in first and "examined" in first
    config = (tmp_path / "out" / "selected.jsonl.config.yaml").read_text()
    assert "preset: offline" in config and "size: 8" in config
    again = deita("select", data, "-o", out, "--size", "8", "--preset", "offline", "-q").stdout
    assert "reused the finished columns" in again
    assert len(out.read_text().splitlines()) == 8
    # re-filter the offline run's scored pool without retyping the sort key (the threshold is the preset's own)
    from deita.workflow import PRESET_DEFAULTS

    work = tmp_path / "out" / "selected.jsonl.work"
    threshold = str(PRESET_DEFAULTS["offline"]["filter"]["threshold"])
    refiltered = deita("filter", scored_pool(out), "--embeddings", work / "embeddings.npy",
                       "-o", tmp_path / "again.jsonl", "--size", "8", "--threshold", threshold).stdout
    assert "instruction_lengths × response_lengths" in refiltered
    assert read_jsonl(tmp_path / "again.jsonl") == read_jsonl(out)
    # the config file reproduces the run
    deita("select", data, "-o", tmp_path / "repro.jsonl", "--config", tmp_path / "out" / "selected.jsonl.config.yaml",
          "-q")
    assert (tmp_path / "repro.jsonl").read_text() == out.read_text()


def test_embed_skip_writes_rejects_and_one_row_per_good_record(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool(4)) + json.dumps(sharegpt(("gpt", "no question")))
                    + "\n")
    out = tmp_path / "emb.npy"
    result = deita("embed", path, "-o", out, "--on-error", "skip", "-q")
    assert "rejected 1 records" in result.stdout
    assert np.load(out).shape == (4, 384)
    rejects = read_jsonl(Path(str(out) + ".rejects.jsonl"))
    assert [r["location"] for r in rejects] == ["line 5"] and "no user message" in rejects[0]["reason"]


def test_select_paper_path_with_config_file(tmp_path, tiny_llama):
    data = write_jsonl(tmp_path / "pool.jsonl", pool(24))
    (tmp_path / "run.yaml").write_text(
        f"complexity: {{model: {tiny_llama}, max_length: 256}}\nquality: {{model: {tiny_llama}}}\n"
        f"embed: {{kind: causal, model: {tiny_llama}, max_length: 128}}\nfilter: {{threshold: 1.0}}\n"
        "run: {shard_size: 8}\n")
    out = tmp_path / "sel.jsonl"
    printed = deita("select", data, "-o", out, "--size", "6", "--config", tmp_path / "run.yaml", "-q").stdout
    assert "into 'complexity_scores'" in printed and "into 'quality_scores'" in printed and "selected 6 of 24" in printed
    selected = read_jsonl(out)
    scored = {r["id"]: r for r in read_jsonl(scored_pool(out))}
    finals = {k: sum(c * q for c, q in zip(r["complexity_scores"], r["quality_scores"], strict=True)) for k, r in scored.items()}
    assert [r["id"] for r in selected] == sorted(finals, key=finals.get, reverse=True)[:6]
    assert "max_length: 256" in (tmp_path / "sel.jsonl.config.yaml").read_text()
