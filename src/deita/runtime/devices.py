"""Device and dtype choice: GPU in bf16 when there is one, else CPU in fp32."""

from __future__ import annotations

import torch

from deita.errors import DeitaError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = ("auto", *DTYPES)
DEVICE_HELP = "auto (a GPU when there is one), cpu, cuda or cuda:N."


def resolve_device(device: str) -> torch.device:
    """Turn "cpu", "cuda", "cuda:N" or "auto" into a torch device, refusing CUDA when it is absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeitaError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'auto'") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeitaError(f"--device {device} was asked for but no CUDA GPU is visible; use 'cpu' or 'auto'")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' → bfloat16 on GPU, float32 on CPU (bf16 matmuls on CPU are slow and less exact)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise DeitaError(f"unknown dtype '{dtype}' (choose auto, {', '.join(DTYPES)})")
    return DTYPES[dtype]
