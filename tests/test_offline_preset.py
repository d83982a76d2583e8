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
