"""Shared fixtures: tiny real causal LMs (random weights, fixed seed) saved like users' models."""

from __future__ import annotations

from pathlib import Path

import pytest

from deita.testing import save_random_causal_lm


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return save_random_causal_lm(tmp_path_factory.mktemp("tiny-llama"), "tiny-llama")


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory) -> Path:
    return save_random_causal_lm(tmp_path_factory.mktemp("tiny-mistral"), "tiny-mistral")
