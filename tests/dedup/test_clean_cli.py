"""`deita dedup`, `deita decontaminate` and the select integration, through the installed command."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import scored_pool, sharegpt, write_jsonl

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
EVAL_PROMPT = ("Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural "
               "experiences and must-see attractions.")


def deita(*args, check=True):
    result = subprocess.run([DEITA, *map(str, args)], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"deita {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pool() -> list[dict]:
    """Twenty distinct chats, copies of some (respaced, recased), and one that holds an eval prompt."""
    topics = ["rivers", "volcanoes", "bridges", "poetry", "chess", "bread", "comets", "violins", "deserts", "bees",
              "glaciers", "printing", "tides", "maps", "salt", "clocks", "kites", "coral", "ink", "owls"]
    records = [sharegpt(("human", (f"Tell me three surprising facts about {t} and why each one matters to people "
                                  f"who study {t} for a living.")),
                        ("gpt", (f"Here are three facts about {t}: the first concerns their history, the second "
                                f"their structure, the third how {t} change over a century.")), id=f"t{n}")
               for n, t in enumerate(topics)]
    for n in (2, 5, 11):
        copy = records[n]["conversations"]
        records.append(sharegpt(("user", "  " + copy[0]["value"].upper()), ("gpt", copy[1]["value"] + "\n"),
                                id=f"copy-of-t{n}"))
    records.append(sharegpt(("human", "Please help: " + EVAL_PROMPT), ("gpt", "Aloha!"), id="contaminated"))
    return records


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    """The pool, an eval set, and the outputs of `deita dedup` then `deita decontaminate` on them."""
    folder = tmp_path_factory.mktemp("clean")
    data = write_jsonl(folder / "pool.jsonl", pool())
    evals = write_jsonl(folder / "question.jsonl", [{"question_id": 81, "turns": [EVAL_PROMPT, "Rewrite it."]}])
    printed = deita("dedup", data, "-o", folder / "d.jsonl", "-q").stdout
    printed += deita("decontaminate", folder / "d.jsonl", "--against", evals, "-o", folder / "c.jsonl", "-q").stdout
    return folder, data, evals, printed


def test_dedup_and_decontaminate_commands(cleaned, tmp_path):
    folder, data, evals, printed = cleaned
    assert "dedup: kept 21 of 24 records" in printed and "removed 3 exact and 0 near" in printed
    removed = read_jsonl(folder / "d.jsonl.duplicates.jsonl")
    assert [(r["id"], r["kept_index"]) for r in removed] == [("copy-of-t2", 2), ("copy-of-t5", 5),
                                                             ("copy-of-t11", 11)]
    assert "decontaminate: kept 20 of 21 records" in printed and "1 by a shared run of 13 words" in printed
    [row] = read_jsonl(folder / "c.jsonl.contaminated.jsonl")
    assert row["id"] == "contaminated" and row["eval"]["id"] == 81
    # a bad record: one line naming file, line and problem; with skip it goes to the rejects file
    broken = tmp_path / "broken.jsonl"
    broken.write_text(data.read_text() + "{broken\n")
    result = deita("dedup", broken, "-o", tmp_path / "d.jsonl", check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        (f"error: {broken}, line 25: invalid JSON: Expecting property name enclosed in double quotes at column 2. "
        f"Use --on-error skip to write bad records to {tmp_path / 'd.jsonl.rejects.jsonl'} and continue")]
    skipped = deita("dedup", broken, "-o", tmp_path / "d.jsonl", "--on-error", "skip", "-q").stdout
    assert "kept 21 of 24 records" in skipped and "rejected 1 records" in skipped
    assert [r["location"] for r in read_jsonl(tmp_path / "d.jsonl.rejects.jsonl")] == ["line 25"]
    # usage errors are short (exit 2); bad values and paths are one line (exit 1)
    missing = deita("decontaminate", data, "-o", tmp_path / "c.jsonl", check=False)
    assert missing.returncode == 2 and "--against" in missing.stderr and "Traceback" not in missing.stderr
    out_of_range = deita("dedup", data, "-o", tmp_path / "x.jsonl", "--threshold", "1.5", check=False)
    assert out_of_range.returncode == 1 and out_of_range.stderr.startswith("error: --threshold: 1.5 is out of range")
    overwrite = deita("decontaminate", data, "--against", evals, "-o", evals, check=False)
    assert overwrite.returncode == 1 and "refusing to overwrite the eval set" in overwrite.stderr


def test_select_dedups_and_decontaminates_before_scoring(cleaned, tmp_path):
    folder, data, evals, _ = cleaned
    (tmp_path / "run.yaml").write_text(f"decontaminate: {{against: [{evals}]}}\n")
    out = tmp_path / "sel.jsonl"
    printed = deita("select", data, "-o", out, "--preset", "offline", "--size", "6", "--config", tmp_path / "run.yaml",
                    "-q").stdout
    assert "dedup: kept 21 of 24 records" in printed and "decontaminate: kept 20 of 21 records" in printed
    assert "scored 20 records" in printed  # of 24: removed records never reach a scorer
    scored = read_jsonl(scored_pool(out))
    assert {r["id"] for r in scored} == {f"t{n}" for n in range(20)}
    stats = json.loads((tmp_path / "sel.jsonl.work" / "clean_stats.json").read_text())
    assert stats["dedup"]["exact_duplicates"] == 3 and stats["decontaminate"]["contaminated_ngram"] == 1
    assert "dedup:\n  exact: true" in (tmp_path / "sel.jsonl.config.yaml").read_text()
    counts = json.loads((tmp_path / "sel.jsonl.manifest.json").read_text())["counts"]
    assert (counts["input"], counts["removed as duplicates"], counts["removed as contaminated"], counts["scored"]) \
        == (24, 3, 1, 20)
    assert (counts["exact_duplicates"], counts["near_duplicates"], counts["contaminated_ngram"]) == (3, 0, 1)
    report = (tmp_path / "sel.jsonl.report.html").read_text()
    assert 'data-stage="removed as duplicates">3<' in report and 'data-stage="removed as contaminated">1<' in report
    # the same selection as selecting, without dedup, from the file `deita dedup` and `decontaminate` wrote
    again = deita("select", folder / "c.jsonl", "-o", tmp_path / "sel2.jsonl", "--preset", "offline", "--size", "6",
                  "--no-dedup", "-q").stdout
    assert "dedup:" not in again and "scored 20 records" in again
    assert read_jsonl(tmp_path / "sel2.jsonl") == read_jsonl(out)
