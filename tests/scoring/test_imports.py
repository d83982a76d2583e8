"""No import cycle between the scoring stage and its backends: a backend imports nothing of
`deita.scoring.scorer` or `deita.scoring.config` (those import the backends), so each loads first, alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

BACKENDS = ["base", "hf", "vllm", "openai"]
CHECK = """
import sys
import deita.scoring.backends.{name}
above = sorted(m for m in ("deita.scoring.scorer", "deita.scoring.config", "deita.cli", "deita.workflow")
               if m in sys.modules)
assert not above, "deita.scoring.backends.{name} imports " + ", ".join(above)
import deita.scoring.scorer
import deita.scoring.config
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_imports_first_in_a_fresh_interpreter(name):
    done = subprocess.run([sys.executable, "-c", CHECK.format(name=name)], check=False, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
