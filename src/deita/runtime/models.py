"""Can the models of a run be had? Checked before any stage runs, so a run without network fails in
seconds with a way out, instead of after hub retries or hours of scoring."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from deita.errors import DeitaError

PROBE_TIMEOUT = 4.0
"""Seconds to wait for the hub per model (one try, no retries)."""


def _cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers brings huggingface_hub
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT.rstrip("/")
    except ImportError:  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_models_reachable(models: Iterable[tuple[str, str]], way_out: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Each (what, model) must be a local folder, in the local hub cache, or answer on the hub right now.

    `way_out` is appended to the error: what the user can do instead (e.g. `--preset offline`).
    """
    import httpx

    endpoint = _hub_endpoint()
    for what, model in dict.fromkeys(models):
        if Path(model).exists() or _cached(model):
            continue
        where = f"{what} '{model}' is not a local folder and not in the Hugging Face cache"
        if _offline():
            raise DeitaError(f"{where}, and the hub is switched off (HF_HUB_OFFLINE). {way_out}")
        url = f"{endpoint}/api/models/{model}"
        try:
            response = httpx.head(url, timeout=httpx.Timeout(timeout), follow_redirects=True)
        except httpx.HTTPError as err:
            raise DeitaError(f"{where}, and the hub at {endpoint} cannot be reached ({type(err).__name__}). "
                             f"{way_out}") from None
        if response.status_code in (401, 403):
            raise DeitaError(f"{where}, and the hub refuses it (HTTP {response.status_code}: a gated model needs "
                             f"`huggingface-cli login`). {way_out}")
        if response.status_code == 404:
            raise DeitaError(f"{where}, and the hub has no such model (HTTP 404). {way_out}")
