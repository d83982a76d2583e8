"""Benchmark the blocked Repr Filter against the one-at-a-time definition on a memory-mapped fp16 pool.

    python benchmarks/selection.py                                   # 30K x 4096 -> 3K on CPU
    python benchmarks/selection.py --pool 1000000 --dim 4096 --size 10000 --device cuda --skip-reference

The pool is clustered unit vectors with near-duplicates (so part of it is rejected) and random scores,
saved with np.save and opened with np.load(mmap_mode="r"), as real embeddings would be.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from deita.selection import deita_filter
from deita.selection.tensors import exact_float32

_CHUNK = 16384
T = TypeVar("T")


def _reference():
    """tests/selection/reference.py (the plain filters the tests hold deita_filter to) as a module."""
    path = Path(__file__).resolve().parents[1] / "tests" / "selection" / "reference.py"
    spec = importlib.util.spec_from_file_location("deita_selection_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_REFERENCE = _reference()
one_at_a_time_filter, toolkit_style_filter = _REFERENCE.one_at_a_time_filter, _REFERENCE.toolkit_style_filter


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True)


def _chunk(n: int, dim: int, centers: torch.Tensor, dup_frac: float, gen: torch.Generator) -> torch.Tensor:
    """`n` rows: cluster members (cos to center 0.5-0.9), then near-duplicates (cos 0.85-0.99 to their
    source) of a few popular members, as paraphrased prompts recur in real pools."""
    n_base = max(1, int(n * (1 - dup_frac)))
    which = torch.randint(len(centers), (n_base,), generator=gen)
    weight = 0.5 + 0.4 * torch.rand((n_base, 1), generator=gen)
    noise = _unit(torch.randn((n_base, dim), generator=gen))
    base = weight * centers[which] + torch.sqrt(1 - weight**2) * noise
    source = torch.randint(max(1, n_base // 20), (n - n_base,), generator=gen)  # popular prompts
    closeness = 0.85 + 0.14 * torch.rand((n - n_base, 1), generator=gen)
    dups = closeness * base[source] + torch.sqrt(1 - closeness**2) * _unit(torch.randn((n - n_base, dim), generator=gen))
    return torch.cat([base, dups])


def build_pool(path: Path, pool: int, dim: int, dtype: str, seed: int, dup_frac: float = 0.5) -> np.ndarray:
    """Write the pool to `path` as .npy chunk by chunk and return it memory-mapped read-only."""
    gen = torch.Generator().manual_seed(seed)
    centers = _unit(torch.randn((max(1, pool // 200), dim), generator=gen))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=(pool, dim))
    for lo in range(0, pool, _CHUNK):
        n = min(_CHUNK, pool - lo)
        out[lo : lo + n] = _unit(_chunk(n, dim, centers, dup_frac, gen)).numpy().astype(dtype)
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def _timed(fn: Callable[..., T], *args: object, **kwargs: object) -> tuple[T, float]:
    """Call `fn` and return its result with the seconds it took."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    """Parse arguments, build the pool, run the filters, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=int, default=30_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--size", type=int, default=3_000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="where to write the pool (default: a temp dir)")
    parser.add_argument("--skip-reference", action="store_true", help="skip the one-at-a-time reference")
    parser.add_argument("--skip-toolkit", action="store_true", help="skip the toolkit-style reference")
    parser.add_argument("--toolkit-max-size", type=int, default=3_000,
                        help="run the toolkit-style reference only up to this selection size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "embeddings.npy"
        emb, build_s = _timed(build_pool, path, args.pool, args.dim, args.dtype, args.seed)
        scores = np.random.default_rng(args.seed).random(args.pool)
        print(f"pool {args.pool} x {args.dim} {args.dtype} memmap ({path.stat().st_size / 2**30:.2f} GiB, "
              f"built in {build_s:.1f} s) -> size {args.size}, threshold {args.threshold}, "
              f"device {args.device}, block {args.block_size}, torch threads {torch.get_num_threads()}")
        deita_filter(scores[:64], emb[:64], 8, args.threshold, device=args.device)  # warm-up, not timed

        result, wall = _timed(deita_filter, scores, emb, args.size, args.threshold,
                              block_size=args.block_size, device=args.device)
        print(f"blocked:        {result.seconds:9.3f} s  (wall {wall:.3f} s)  selected {len(result.indices)}, "
              f"examined {result.n_examined} ({1 - len(result.indices) / max(result.n_examined, 1):.1%} rejected)")

        if not args.skip_reference:
            expected, ref_s = _timed(one_at_a_time_filter, scores, emb, args.size, args.threshold)
            assert np.array_equal(result.indices, expected), "blocked filter differs from the reference"
            print(f"one-at-a-time:  {ref_s:9.3f} s  -> blocked is {ref_s / result.seconds:.1f}x faster "
                  f"(identical indices)")

        if not args.skip_toolkit and args.size <= args.toolkit_max_size:
            with exact_float32():
                toolkit, tk_s = _timed(toolkit_style_filter, scores, emb, args.size, args.threshold,
                                       device=str(torch.device(args.device if args.device != "auto" else "cpu")))
            same = "identical" if np.array_equal(toolkit, result.indices) else "DIFFERENT"
            print(f"toolkit-style:  {tk_s:9.3f} s  -> blocked is {tk_s / result.seconds:.1f}x faster ({same} indices)")


if __name__ == "__main__":
    main()
