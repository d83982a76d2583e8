"""The offline preset: its own embedder and threshold, declared once, with the preset."""

from __future__ import annotations

import inspect

from deita import select_config
from deita.select_config import PRESET_DEFAULTS, SelectConfig


def test_offline_threshold_and_embedder_declared_once_with_the_preset() -> None:
    declared = PRESET_DEFAULTS["offline"]["filter"]["threshold"]
    config = SelectConfig.build({"preset": "offline"})
    assert config.embed.kind == "static" and config.filter.threshold == declared != 0.9
    assert SelectConfig.build({"preset": "paper"}).filter.threshold == 0.9
    assert SelectConfig.build({"preset": "offline", "filter": {"threshold": 0.5}}).filter.threshold == 0.5
    assert inspect.getsource(select_config).count(repr(declared)) == 1  # one declaration, no copies


def test_sort_key_of_the_lengths_reproduces_the_length_only_offline_selection(tmp_path) -> None:
    """`--sort-key instruction_lengths,response_lengths` ranks as the offline preset did before its signals:
    the same records in the same order as dedup → length scores → static embeddings → filter at 0.99."""
    import json
    import os
    import subprocess
    import sys

    from builders import chat_pool, write_jsonl

    from deita.dedup.config import DedupConfig
    from deita.dedup.run import dedup_file
    from deita.embedding.embedder import EmbedConfig
    from deita.embedding.run import embed_file
    from deita.runtime.options import RunOptions
    from deita.scoring.lengths import add_length_scores
    from deita.selection.config import FilterConfig
    from deita.selection.run import filter_file

    write_jsonl(tmp_path / "pool.jsonl", chat_pool(150, seed=8))
    subprocess.run([sys.executable, "-m", "deita.cli", "select", tmp_path / "pool.jsonl", "-o", tmp_path / "sel.jsonl",
                    "--preset", "offline", "--size", "30", "--sort-key", "instruction_lengths,response_lengths",
                    "-q"], check=True, capture_output=True, env=dict(os.environ))
    quiet = RunOptions(quiet=True)
    dedup_file(tmp_path / "pool.jsonl", tmp_path / "d.jsonl", DedupConfig(), quiet)
    add_length_scores(tmp_path / "d.jsonl", tmp_path / "l.jsonl", quiet)
    embed_file(tmp_path / "l.jsonl", tmp_path / "e.npy", EmbedConfig(kind="static"), quiet)
    filter_file(tmp_path / "l.jsonl", tmp_path / "ref.jsonl",
                FilterConfig(size=30, threshold=PRESET_DEFAULTS["offline"]["filter"]["threshold"],
                             sort_key=("instruction_lengths", "response_lengths")), tmp_path / "e.npy")

    def ids(path):
        return [json.loads(line)["id"] for line in path.read_text().splitlines()]

    assert ids(tmp_path / "sel.jsonl") == ids(tmp_path / "ref.jsonl") and len(ids(tmp_path / "ref.jsonl")) == 30


def test_offline_select_keeps_known_bad_records_out(tmp_path) -> None:
    """The issue's target, on a generated pool: at 20 % of the pool, each injected class at most 0.25 of its
    pool share in the offline selection, all together at most 0.15; random keeps them at about their share."""
    from builders import chat_pool, write_jsonl

    from deita.probe.run import ALL, ProbeSettings, run_probe

    write_jsonl(tmp_path / "pool.jsonl", chat_pool(300, seed=21))
    config = SelectConfig.build({"preset": "offline"})
    result = run_probe(tmp_path / "pool.jsonl", tmp_path / "probe.json", config, ProbeSettings(rate=0.2, seeds=(3,)))
    ratios = result["runs"][0]["ratios"]
    assert all(ratio <= 0.25 for name, ratio in ratios.items() if name != ALL), ratios
    assert ratios[ALL] <= 0.15, ratios
    random = result["runs"][0]["random_ratios"]
    assert random["off_topic"] + random["garbled"] + random["truncated"] + random["refusal"] > 2.0, random
