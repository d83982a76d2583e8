"""Device and dtype choice: GPU in bf16 when there is one, else CPU in fp32.

torch is imported where a device or dtype is resolved, not at import: the dtype names are all that configs
and `--help` need."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deita.errors import DeitaError, quote

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""The dtypes a model may run in, by their torch names."""
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)
DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:N."


def resolve_device(device: str) -> torch.device:
    """Turn "cpu", "cuda", "cuda:N" or "auto" into a torch device, refusing CUDA when it is absent."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeitaError(f"unknown device {quote(device)}; use 'cpu', 'cuda' or 'auto'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeitaError(f"--device {device} was asked for but no CUDA GPU is visible; use 'cpu' or 'auto'")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' → bfloat16 on GPU, float32 on CPU (bf16 matmuls on CPU are slow and less exact)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPE_NAMES:
        raise DeitaError(f"unknown dtype '{dtype}' (choose auto, {', '.join(DTYPE_NAMES)})")
    return getattr(torch, dtype)
