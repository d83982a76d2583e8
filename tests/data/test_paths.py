"""check_paths / check_writable: clashes between a command's inputs and outputs are refused before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deita.data import paths as dpaths
from deita.data.io import write_records
from deita.data.paths import check_paths, check_writable
from deita.errors import DeitaError


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.jsonl").write_text('{"conversations": []}\n')
    return tmp_path


def test_output_that_is_the_input(in_tmp: Path) -> None:
    msg = "--output ./p.jsonl is the input file p.jsonl: refusing to overwrite the input"
    with pytest.raises(DeitaError, match=msg.replace(".", r"\.")):
        check_paths({"input": "p.jsonl"}, {"--output": "./p.jsonl"})
    with pytest.raises(DeitaError, match="is the input file"):
        check_paths({"input": "p.jsonl"}, {"--output": in_tmp / "sub" / ".." / "p.jsonl"})  # absolute
    check_paths({"input": "p.jsonl"}, {"--output": "q.jsonl", "--stats": None})


def test_output_that_is_another_output(in_tmp: Path) -> None:
    with pytest.raises(DeitaError) as e:
        check_paths(
            {"input": "p.jsonl"}, {"--output": "st.jsonl", "--stats": "./st.jsonl", "rejects file": None}
        )
    assert (
        str(e.value) == "--stats ./st.jsonl is the same file as --output st.jsonl: give them different paths"
    )


def test_symlink_and_hard_link_to_the_input(in_tmp: Path) -> None:
    os.symlink(in_tmp / "p.jsonl", in_tmp / "link.jsonl")
    with pytest.raises(DeitaError, match="--output link.jsonl is the input file p.jsonl"):
        check_paths({"input": "p.jsonl"}, {"--output": "link.jsonl"})
    os.link(in_tmp / "p.jsonl", in_tmp / "hard.jsonl")
    with pytest.raises(DeitaError, match="--output hard.jsonl is the input file p.jsonl"):
        check_paths({"input": "p.jsonl"}, {"--output": "hard.jsonl"})
    os.symlink(in_tmp, in_tmp / "dirlink")  # a symlinked folder on the way
    with pytest.raises(DeitaError, match="rejects file dirlink/p.jsonl is the input file"):
        check_paths({"input": "p.jsonl"}, {"rejects file": "dirlink/p.jsonl"})
    with pytest.raises(DeitaError, match="--stats hard.jsonl is the same file as --output p2.jsonl"):
        os.link(in_tmp / "p.jsonl", in_tmp / "p2.jsonl")
        check_paths({}, {"--output": "p2.jsonl", "--stats": "hard.jsonl"})


def test_output_inside_an_input_dataset_and_cache_holding_the_input(in_tmp: Path) -> None:
    write_records(in_tmp / "ds", [{"conversations": [{"from": "human", "value": "q"}]}])
    with pytest.raises(DeitaError, match="--output ds/scored.jsonl is inside the input folder ds"):
        check_paths({"input": "ds"}, {"--output": "ds/scored.jsonl"})
    (in_tmp / "work").mkdir()
    (in_tmp / "work" / "in.jsonl").write_text("{}\n")
    with pytest.raises(
        DeitaError,
        match=r"cache \./work is a folder that holds the input work/in\.jsonl: writing it would replace",
    ):
        check_paths({"input": "work/in.jsonl"}, {"--output": "out.jsonl", "cache": "./work"})
    check_paths({"input": "ds"}, {"--output": "ds_scored", "cache": "ds_scored.cache"})


def test_check_writable(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_writable("--output", "new/deeper/out.jsonl")  # creatable, and nothing is created
    assert not (in_tmp / "new").exists()
    (in_tmp / "out.txt").write_text("x")
    with pytest.raises(DeitaError) as e:
        check_writable("--output", "out.txt/x.jsonl")
    assert str(e.value) == "--output out.txt/x.jsonl: out.txt is a file, not a folder"
    with pytest.raises(DeitaError, match="out.txt is a file, not a folder"):
        check_writable("--stats", "out.txt/a/b/st.jsonl")
    (in_tmp / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        dpaths.os, "access", lambda p, mode: Path(p).name != "locked" and real_access(p, mode)
    )
    with pytest.raises(DeitaError) as e:
        check_writable("--output", "locked/sub/out.jsonl")
    assert str(e.value) == "--output locked/sub/out.jsonl: cannot write in locked (permission denied)"
    assert "\n" not in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_writable_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(DeitaError, match="permission denied"):
            check_writable("--output", folder / "out.jsonl")
    finally:
        folder.chmod(0o700)
