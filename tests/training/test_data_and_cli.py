"""Pairs and their rejects, the paper's DPO sample, and the `deita train` / `dpo-data` commands' errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import sharegpt, write_jsonl
from datasets import Dataset

from deita.data.io import RecordPolicy
from deita.errors import DeitaError, RecordError
from deita.training.data import iter_pairs, parse_pair, sample_pairs

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")


def deita(*args, env=None):
    return subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})


def ultrafeedback(i: int) -> dict:
    prompt = f"question {i}"
    return {"prompt_id": f"p{i}", "prompt": prompt, "score_chosen": 8.0, "score_rejected": 3.0,
            "chosen": [{"content": prompt, "role": "user"}, {"content": f"good answer {i}", "role": "assistant"}],
            "rejected": [{"content": prompt, "role": "user"}, {"content": f"bad answer {i}", "role": "assistant"}]}


def test_pair_shapes():
    turns, system, chosen, rejected = parse_pair(ultrafeedback(1))
    assert [(t.instruction, t.response) for t in turns] == [("question 1", "")]
    assert (system, chosen, rejected) == (None, "good answer 1", "bad answer 1")
    conversation = [{"from": "system", "value": "be kind"}, {"from": "human", "value": "hi"},
                    {"from": "gpt", "value": "hello"}, {"from": "human", "value": "and?"}]
    turns, system, chosen, _ = parse_pair({"prompt": conversation, "chosen": [{"role": "assistant", "content": "a"}],
                                           "rejected": "b"})
    assert [(t.instruction, t.response) for t in turns] == [("hi", "hello"), ("and?", "")]
    assert (system, chosen) == ("be kind", "a")


@pytest.mark.parametrize(("pair", "reason"), [
    ({"prompt": "q", "chosen": "same", "rejected": " same "}, "'chosen' and 'rejected' are the same answer"),
    ({"prompt": "q", "chosen": "", "rejected": "x"}, "'chosen' is empty"),
    ({"prompt": "q", "chosen": "x"}, "missing 'rejected'"),
    ({"chosen": "x", "rejected": "y"}, "no prompt"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}],
      "rejected": "y"}, "'chosen' ends with an empty answer"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "q"}], "rejected": "y"},
     "'chosen' does not end with the assistant's answer"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]},
     "'chosen' and 'rejected' answer different conversations"),
    ({"prompt": "q", "chosen": 3, "rejected": "y"}, "'chosen' is a number, expected a string or a list of messages"),
])
def test_bad_pairs_are_rejects_with_a_reason(tmp_path, pair, reason):
    data = write_jsonl(tmp_path / "pairs.jsonl", [ultrafeedback(0), pair, ultrafeedback(2)])
    with pytest.raises(RecordError, match="line 2: " + reason.replace("(", r"\(").replace(")", r"\)")):
        list(iter_pairs(data))
    with RecordPolicy.skipping(tmp_path / "rejects.jsonl") as rejects:
        good = list(iter_pairs(data, rejects))
    assert [p.index for p in good] == [0, 2]
    (row,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert row["location"] == "line 2" and row["reason"].startswith(reason) and row["record"] == pair


def test_dpo_data_samples_what_datasets_shuffle_with_the_seed_takes(tmp_path):
    records = [ultrafeedback(i) for i in range(50)]
    source = tmp_path / "train_prefs.parquet"
    Dataset.from_list(records).to_parquet(source)
    result = deita("dpo-data", source, "-o", tmp_path / "pairs.jsonl", "--size", 12, "--seed", 42)
    assert result.returncode == 0, result.stderr
    assert "sampled 12 of 50 good pairs" in result.stdout
    written = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    expected = Dataset.from_list(records).shuffle(seed=42).select(range(12)).to_list()
    assert [r["prompt_id"] for r in written] == [r["prompt_id"] for r in expected]
    assert written[0] == next(r for r in records if r["prompt_id"] == written[0]["prompt_id"])  # unchanged


def test_dpo_data_passes_over_bad_pairs_with_skip(tmp_path):
    records = [ultrafeedback(i) for i in range(10)]
    records[3]["rejected"] = records[3]["chosen"]
    data = write_jsonl(tmp_path / "uf.jsonl", records)
    failed = deita("dpo-data", data, "-o", tmp_path / "p.jsonl", "--size", 5)
    assert failed.returncode == 1 and failed.stderr.startswith(f"error: {data}, line 4: 'chosen' and 'rejected'")
    with RecordPolicy.skipping(tmp_path / "p.jsonl.rejects.jsonl") as policy:
        summary = sample_pairs(data, tmp_path / "p.jsonl", -1, 42, policy)
    assert (summary.records, summary.rejected, summary.written) == (10, 1, 9)


def test_train_usage_and_one_line_errors(tmp_path, tiny_llama, capsys):
    """In-process through `deita.cli.main`, as the installed command runs it (a subprocess per case is slow)."""
    from deita.cli import main

    def run(*args) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
        return exit_.value.code, capsys.readouterr().err

    data = write_jsonl(tmp_path / "data.jsonl", [
        sharegpt(("human", "q1"), ("gpt", "a1")), sharegpt(("human", "only a question"))])
    code, err = run("train", "sft", data, "-o", tmp_path / "o", "--model", tiny_llama, "--learning-rat", "1")
    assert code == 2 and "No such option '--learning-rat'" in err and "--learning-rate" in err
    for args, message in [
        ((), "error: --model is required"),
        (("--model", tiny_llama, "--warmup-ratio", "2"), "error: --warmup-ratio: 2.0 is out of range"),
        (("--model", tiny_llama, "--template", "chatml"), "error: --template: 'chatml' is not one of vicuna, model"),
        (("--model", tiny_llama), f"error: {data}, line 2: no assistant answer: nothing to train on. Use "
                                  "--on-error skip"),
        (("--model", tmp_path / "missing"), "error: --model"),
    ]:
        code, err = run("train", "sft", data, "-o", tmp_path / "o", *args)
        assert code == 1 and err.startswith(message), err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, err = run("train", "sft", data, "-o", tmp_path / "busy", "--model", tiny_llama)
    assert code == 1 and "is not empty and holds no deita training run" in err
    code, err = run("train", "dpo", data, "-o", tmp_path / "d", "--model", tiny_llama, "--max-prompt-length", "4096")
    assert code == 1 and "--max-prompt-length (4096) leaves no room for the answer within --max-length (2048)" in err


def test_deita_imports_without_the_training_extra(tmp_path):
    """Blocking trl: `deita --help` and the train command's help work; running it says what to install."""
    code = ("import sys; sys.modules['trl'] = None\n"
            "from deita.cli import main\n"
            "import deita.training.config, deita.training.render\n"
            "sys.argv = ['deita'] + sys.argv[1:]\n"
            "main()\n")
    help_run = subprocess.run([sys.executable, "-c", code, "train", "sft", "--help"], capture_output=True, text=True, check=False)
    assert help_run.returncode == 0 and "--per-device-batch" in help_run.stdout
    data = write_jsonl(tmp_path / "d.jsonl", [sharegpt(("human", "q"), ("gpt", "a"))])
    run = subprocess.run([sys.executable, "-c", code, "train", "sft", str(data), "-o", str(tmp_path / "o"),
                          "--model", "m"], capture_output=True, text=True, check=False)
    assert run.returncode == 1 and "pip install -e '.[train]'" in run.stderr and "Traceback" not in run.stderr
    with pytest.raises(DeitaError):
        from deita.training import require_training

        sys.modules["trl"], saved = None, sys.modules.get("trl")
        try:
            require_training()
        finally:
            sys.modules["trl"] = saved


def test_train_sft_skip_writes_rejects_by_kind_into_the_output_folder(tmp_path, tiny_llama, capsys):
    """`train sft --on-error skip`: a broken line and a record with no answer go to OUTDIR/rejects.jsonl with
    their kinds, the summary counts them by kind, and training goes on with the rest."""
    from deita.cli import main

    good = [json.dumps(sharegpt(("human", f"q{i}"), ("gpt", f"answer {i}"))) for i in range(3)]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([good[0], "{broken", json.dumps(sharegpt(("human", "no answer"))), *good[1:]]) + "\n")
    main([str(a) for a in ("train", "sft", data, "-o", tmp_path / "out", "--model", tiny_llama, "--max-steps", 1,
                           "--per-device-batch", 1, "--grad-accum", 1, "--on-error", "skip", "-q")])
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["index"], r["location"], r["kind"]) for r in rows] == [(1, "line 2", "parse"), (2, "line 3", "empty")]
    assert f"rejected 2 of 5 records (1 parse, 1 empty) → {tmp_path / 'out' / 'rejects.jsonl'}" in out
