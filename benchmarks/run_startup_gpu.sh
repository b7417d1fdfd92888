#!/usr/bin/env bash
# One device call: what a (re)start costs (issue 14 items 1-3), per body a cold then a warm compile cache
# (two processes on one cache directory), then the CUDA equivalence tests of the fast path, inside
# BUDGET_S seconds (whatever does not fit is skipped and says so). Needs .cache/s2bench (see README).
set -u
OUT=${OUT:-benchmarks/results}
R=$OUT/r  # result files, packed into $OUT/startup_results.tgz at the end (the device call returns 8 files at most)
mkdir -p "$R"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export INTERNVLA_S2_CACHE=$PWD/.cache/s2bench/cache
PY=${PY:-python3}
BUDGET_S=${BUDGET_S:-330}
START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
S2CC=${S2CC:-/tmp/s2_compile_cache}  # (not CC: that names the C compiler, which Triton uses) empty on a fresh machine: the first run of each body is cold
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/startup_env.txt"
$PY -c "import torch, transformers, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" | tee -a "$OUT/startup_env.txt"
for size in ${SIZES:-8B q25-7B 2B}; do
  [ "$size" = none ] && continue
  for label in cold warm; do
    for reuse in ${REUSE:-off}; do  # REUSE="off on": also with prefix reuse, on a cache directory of its own
      [ "$reuse" = on ] && flag=--prefix-reuse || flag=
      L=$(left)
      if [ "$L" -lt 60 ]; then echo "SKIPPED $size $label $flag: ${L}s of the budget left" | tee -a "$OUT/startup.log"; continue; fi
      timeout "$L" $PY benchmarks/s2_step.py --startup --sizes "$size" --steps "${STEPS:-20}" --new-tokens 10 $flag \
        --tokenizer "${TOKENIZER:-.cache/s2bench/tokenizer}" --cache-dir "$S2CC/$size$flag" --cache-label "$label" \
        --startup-limit-s $((L - 25)) --out "$R" 2>&1 | grep -v -i "warn" | tee -a "$OUT/startup.log"
    done
  done
  if [ "$size" = "${TESTS_AFTER:-8B}" ] && [ "$(left)" -gt 150 ]; then  # tokens equal the plain path's (tiny, fp32, CUDA)
    timeout 100 $PY -m pytest tests/test_fast_generation.py -q -x -k cuda -p no:cacheprovider 2>&1 | tail -8 | tee "$R/cuda_tests.log"
  fi
done
# Upstream's way and the fast path interleaved (steps p50/p90 within this run), on the caches warmed above.
for size in ${STEP_SIZES:-8B q25-7B 2B}; do
  [ "$size" = none ] && continue  # STEP_SIZES=none: no step comparison
  L=$(left)
  if [ "$L" -lt 75 ]; then echo "SKIPPED step comparison $size: ${L}s of the budget left" | tee -a "$OUT/startup.log"; continue; fi
  timeout "$L" $PY benchmarks/s2_step.py --sizes "$size" --steps "${CMP_STEPS:-24}" --warmup-steps 3 --new-tokens 10 \
    --tokenizer "${TOKENIZER:-.cache/s2bench/tokenizer}" --cache-dir "$S2CC/$size" --out "$R/steps_$size" 2>&1 | grep -v -i "warn" | tee -a "$OUT/startup.log"
done
echo "used $(( $(date +%s) - START ))s of ${BUDGET_S}s"
cp "$OUT/startup_env.txt" "$OUT/startup.log" "$R/" 2>/dev/null
tar czf "$OUT/startup_results.tgz" -C "$R" . && rm -rf "$R"
