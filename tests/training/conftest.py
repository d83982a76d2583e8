"""Shared by the training tests: short generated conversations, one torch thread (tiny models run far faster
that way on a shared 2-core machine), and the training extra (skipped where it is not installed)."""

from __future__ import annotations

import pytest

pytest.importorskip("trl", reason="the training extra is not installed: pip install -e '.[train]'")

@pytest.fixture
def one_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
