#!/usr/bin/env bash
# Every GPU check of issue 24 (and issue 20's score/embed reruns) in one call; see benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--budget 300] [--parts sft,dpo,...]   # the lent GPU machine: carry [".gpu"]
#   nice -n 10 bash benchmarks/gpu_check.sh --tiny                      # here, on the CPU: tiny models
#
# Needs .gpu/ from benchmarks/gpu_prepare.sh. On the GPU machine it installs the carried wheels into
# $WORK/site (the image lacks trl, datasets, orjson, liger-kernel, ...), unpacks the 2K ShareGPT slice, then runs
# the parts in priority order within --budget seconds (each under its own cap), writing $OUT/gpu_check.json,
# $OUT/gpu_check.md (tables for docs/benchmarks.md) and $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=$ROOT/.gpu
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
OUT=${OUT:-$WORK/out}
PYTHON=${PYTHON:-python3}
tiny=0
for arg in "$@"; do [ "$arg" = --tiny ] && tiny=1; done
if [ ! -d "$CARRY/whl" ] || [ ! -f "$CARRY/data/sharegpt_2k.json.xz" ]; then
  echo "error: no complete .gpu/ here: run bash benchmarks/gpu_prepare.sh first, and name .gpu in carry" >&2
  exit 2
fi
mkdir -p "$OUT" "$WORK"
SITE=$WORK/site
{
  echo "gpu_check: $(date -u +%FT%TZ) on $(hostname), $($PYTHON --version 2>&1), tiny=$tiny"
  if [ "$tiny" = 0 ]; then
    # the device image's python3 holds torch; the carried wheels go beside it, first on the path
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$CARRY"/whl/*.whl || { echo "error: the carried wheels did not install"; exit 3; }
  fi
  export PYTHONPATH=$SITE:$CARRY/site:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1
  $PYTHON -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    "$CARRY/data/sharegpt_2k.json.xz" "$WORK/sharegpt_2k.json" || exit 4
  $PYTHON benchmarks/gpu_check.py --work "$WORK" --out "$OUT" --data "$WORK/sharegpt_2k.json" \
    --tokenizer "$CARRY/tokenizer" --site "$SITE" "$@"
} 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
