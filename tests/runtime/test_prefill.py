"""The shared prefill engine: compiled decoder layers compute what the eager model does."""

import numpy as np
import pytest
import torch

from deita.errors import DeitaError
from deita.runtime.prefill import PrefillEngine, identity_head
from deita.testing import random_causal_lm


def _sequences(count: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 1000, size=int(n)).tolist() for n in rng.integers(3, 60, size=count)]


def test_compile_is_off_by_default_on_cpu():
    model, _ = random_causal_lm("tiny-llama")
    assert not PrefillEngine(model).compiled


@pytest.mark.slow
def test_compiled_layers_match_eager_across_batch_shapes():
    eager_model, _ = random_causal_lm("tiny-llama", seed=3)
    compiled_model, _ = random_causal_lm("tiny-llama", seed=3)
    sequences = _sequences(40)
    expected = PrefillEngine(eager_model, batch_tokens=256).run(sequences, identity_head)
    engine = PrefillEngine(compiled_model, batch_tokens=256, compile=True)
    assert engine.compiled
    # Several batches of different (rows, width): the dynamic-shape compilation must serve all of them.
    np.testing.assert_allclose(engine.run(sequences, identity_head), expected, atol=1e-4)
    reversed_order = engine.run(sequences[::-1], identity_head)
    np.testing.assert_allclose(reversed_order, expected[::-1], atol=1e-4)


def test_compile_needs_a_layer_list():
    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

        def get_decoder(self) -> torch.nn.Module:
            return self.proj

    with pytest.raises(DeitaError, match="no `layers` list; run without compile"):
        PrefillEngine(Flat(), compile=True)
