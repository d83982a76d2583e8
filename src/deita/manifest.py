"""`OUTPUT.manifest.json`: what a `deita select` run read, wrote and used, so it can be checked and repeated."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

from deita.data import atomic
from deita.runtime.openai_http import without_credentials

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def sha256_of(path: Path) -> str:
    """The sha256 of a file, or of a folder's files in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def model_identity(role: str, model: str) -> dict[str, Any]:
    """A model by path (a folder, or one weights file such as a .gguf) or hub id, its revision when cached from the
    hub, and a hash of its config and weight names (of a file: its name and size)."""
    folder = Path(model)
    entry: dict[str, Any] = {"role": role, "model": model}
    if folder.is_file():  # one weights file (a .gguf): its name and size, not a read of its gigabytes
        identity = f"{folder.name}\0{folder.stat().st_size}".encode()
        entry["config_and_weights_sha256"] = hashlib.sha256(identity).hexdigest()
        return entry
    if not folder.is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
        except ImportError:  # pragma: no cover
            cached = None
        except ValueError:  # not a hub id either (HFValidationError): a path that is not there
            cached = None
        if not isinstance(cached, str):
            entry["revision"] = None
            return entry
        folder = Path(cached).parent
        entry["revision"] = folder.name  # the snapshot folder is named by the commit
    config = folder / "config.json"
    digest = hashlib.sha256(config.read_bytes() if config.exists() else b"")
    for name in sorted(p.name for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)):
        digest.update(name.encode())
    entry["config_and_weights_sha256"] = digest.hexdigest()
    return entry


def versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    from deita import __version__

    return {"deita": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}"


def write_manifest(path: Path, input_path: Path, output_path: Path, counts: dict[str, Any], config: dict[str, Any],
                   models: list[tuple[str, str]], seconds: dict[str, float], seeds: dict[str, int],
                   input_sha256: str | None = None) -> None:
    """`input_sha256`: the input's hash as a read of the run found it, so the input is not read again for it."""
    manifest = {
        "command": ["deita", *map(without_credentials, sys.argv[1:])],
        "input": {"path": str(input_path), "bytes": input_path.stat().st_size if input_path.is_file() else None,
                  "sha256": input_sha256 or sha256_of(input_path)},
        "output": {"path": str(output_path), "sha256": sha256_of(output_path)},
        "counts": counts,
        "config": config,
        "versions": versions(),
        "models": [model_identity(role, model) for role, model in models],
        "device": device_description(),
        "seconds": {stage: round(value, 3) for stage, value in seconds.items()},
        "seeds": seeds,
    }
    atomic.write_bytes(path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
