"""Can the models of a run be had? Checked before any stage runs, so a run without network fails in
seconds with a way out, instead of after hub retries or hours of scoring. And where `from_pretrained` finds
a model given as a folder or a GGUF file."""

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


def pretrained_location(model: str) -> tuple[str, dict[str, str]]:
    """Where `from_pretrained` looks for `model`, and the `gguf_file` argument when it is a GGUF model.

    `model` is a hub id, a model folder, a `.gguf` file (`--model path/to/model.gguf`), or a folder that holds
    exactly one `.gguf` file and no `config.json` (such as the folder of a package that ships one). transformers
    dequantises a GGUF model on load, which needs the `gguf` package.
    """
    path = Path(model)
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    if not path.is_dir() or (path / "config.json").exists():
        return model, {}
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) > 1:
        raise DeitaError(f"{model} holds {len(ggufs)} .gguf files ({', '.join(ggufs)}); pass the one to load, "
                         f"e.g. --model {path / ggufs[0]}")
    if not ggufs:
        return model, {}
    return model, {"gguf_file": ggufs[0]}


GGUF_HINT = "loading a .gguf model needs the gguf package: pip install gguf (or pip install -e '.[ifd]')"


def gguf_missing(extra: dict[str, str]) -> bool:
    """Whether a GGUF model is asked for and the gguf package is absent (transformers then raises ImportError)."""
    if "gguf_file" not in extra:
        return False
    import importlib.util

    return importlib.util.find_spec("gguf") is None
