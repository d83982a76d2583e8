"""Save a random-weight model of a real architecture beside a real tokenizer, for the training and scoring
checks of benchmarks/gpu_check.sh (built once per call, read by several parts).

    python benchmarks/gpu_model.py --tokenizer .gpu/tokenizer --out /tmp/model              # GPU: llama-1b
    python benchmarks/gpu_model.py --tokenizer .gpu/tokenizer --out /tmp/model --arch tiny-llama

llama-1b is TinyLlama-1.1B's shape (22 layers, hidden 2,048, grouped-query attention with 4 KV heads); with
SmolLM2's 49,152-token vocabulary and an untied LM head it has 1.2B parameters.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _training import save_model

from deita.testing import ARCHITECTURES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer folder (save_pretrained)")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), help="shape (default: llama-1b on a GPU, "
                        "tiny-llama on a CPU)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    start = time.perf_counter()
    figures = save_model(args.out, args.arch or ("llama-1b" if cuda else "tiny-llama"), args.tokenizer,
                         device="cuda" if cuda else "cpu")
    figures.update(folder=str(args.out), seconds=time.perf_counter() - start)
    print(json.dumps({"benchmark": "model", **figures}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
