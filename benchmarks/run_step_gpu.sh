#!/usr/bin/env bash
# One device call (issue 14 item 4): per body one process running the fast-path variants side by side
# (step_variants.py: base = per-segment vision attention, grouped = vision attention grouped by length,
# grouped_prefix = grouped + prefix reuse), then, if time is left, the CUDA equivalence tests; inside
# BUDGET_S seconds (a body that does not fit is skipped and says so). Writes to $OUT:
# step_variants_<card>_<date>.{json,md} (all bodies), step.log, step_env.txt, cuda_tests.log, and if time
# is left step_variants_decode_tuned_<card>_<date>.{json,md} (8B decode compiled with GEMM autotuning).
# The tokenizer: .cache/s2bench/tokenizer, or unpacked here from the carried .cache/s2tok (tokenizer.json.gz).
# CPU smoke run: TINY=1 SIZES="tiny-q25 tiny" TUNE_SIZE=tiny STEPS=10 PY=.venv/bin/python OUT=/tmp/st bash benchmarks/run_step_gpu.sh
set -u
OUT=${OUT:-benchmarks/results}
R=$OUT/r
mkdir -p "$R"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export INTERNVLA_S2_CACHE=${INTERNVLA_S2_CACHE:-$PWD/.cache/s2bench/cache}
PY=${PY:-python3}
BUDGET_S=${BUDGET_S:-380}
START=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
LOG=$OUT/step.log
TOK=.cache/s2bench/tokenizer
if [ ! -s "$TOK/tokenizer.json" ] && [ -s .cache/s2tok/tokenizer.json.gz ]; then
  mkdir -p "$TOK" && gunzip -c .cache/s2tok/tokenizer.json.gz > "$TOK/tokenizer.json" && cp .cache/s2tok/tokenizer_config.json "$TOK/"
fi
# The tests' tokenizer (core.tiny): Qwen's BPE without the added tokens, from the same file when not carried.
BPE=$INTERNVLA_S2_CACHE/qwen-bpe-v1/tokenizer.json
if [ ! -s "$BPE" ]; then  # else from the navigator's tokenizer (the same vocabulary and merges), tracked in the package
  SRC=internvla_s2_node/assets/navigator; [ -s "$TOK/tokenizer.json" ] && SRC=$TOK/tokenizer.json
  $PY benchmarks/step_variants.py --bpe-from "$SRC" --out "$BPE" 2>&1 | tee -a "$LOG"
fi
TINY_ARG=""
[ -n "${TINY:-}" ] && TINY_ARG=--tiny
TOK_ARG=""
[ -s "$TOK/tokenizer.json" ] && TOK_ARG="--tokenizer $TOK"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
  git rev-parse --short HEAD 2>/dev/null; } | tee "$OUT/step_env.txt"
S2CC=${S2CC:-/tmp/s2_compile_cache}
SIZES=${SIZES:-q25-7B 8B 2B}
n=$(echo $SIZES | wc -w)
for size in $SIZES; do
  L=$(left)
  n=$((n - 1))
  share=$(( L - n * ${LATER_S:-100} ))  # at most what is left less LATER_S for each body after it (they usually take less)
  if [ "$share" -lt 45 ]; then echo "SKIPPED $size: ${L}s of the budget left (share ${share}s)" | tee -a "$LOG"; continue; fi
  timeout "$share" $PY benchmarks/step_variants.py $TINY_ARG --size "$size" --variants "${VARIANTS:-base,grouped,grouped_prefix}" \
    --steps "${STEPS:-32}" --new-tokens 10 $TOK_ARG --cache-dir "$S2CC/$size" --deadline-s $((share - 10)) --out "$R" 2>&1 \
    | grep -v -i "warn" | tee -a "$LOG"
  echo "[$size] exit ${PIPESTATUS[0]} after $(( $(date +%s) - START ))s" | tee -a "$LOG"
done
$PY benchmarks/step_variants.py --combine "$R"/step_*.json --out "$OUT" 2>&1 | tail -3 | tee -a "$LOG"
if [ -z "${TINY:-}" ] && [ "$(left)" -gt "${TEST_MIN_S:-90}" ]; then  # tokens equal the plain path's (tiny, fp32, CUDA), grouped vision included
  timeout $(( $(left) - 5 )) $PY -m pytest tests/test_fast_generation.py tests/test_vision_attention.py -q -x -k "cuda or tower_features" -p no:cacheprovider 2>&1 \
    | tail -8 | tee "$OUT/cuda_tests.log"
else
  echo "SKIPPED the CUDA tests: $(left)s left" | tee -a "$LOG"
fi
# Last, if time is left: the 8B decode step compiled with GEMM autotuning, against the default compile.
if [ -n "${TUNE_SIZE-8B}" ] && [ "$(left)" -gt "${TUNE_MIN_S:-120}" ]; then  # TUNE_SIZE= (empty) skips it
  L=$(left)
  timeout $((L - 5)) $PY benchmarks/step_variants.py $TINY_ARG --size "${TUNE_SIZE:-8B}" --variants grouped,grouped_tuned --steps "${TUNE_STEPS:-16}" \
    --new-tokens 10 $TOK_ARG --cache-dir "$S2CC/${TUNE_SIZE:-8B}" --deadline-s $((L - 15)) --out "$R/tuned" 2>&1 | grep -v -i "warn" | tee -a "$LOG"
  $PY benchmarks/step_variants.py --combine "$R"/tuned/step_*.json --tag decode_tuned --out "$OUT" 2>&1 | tail -3 | tee -a "$LOG"
else
  echo "SKIPPED the decode autotuning comparison: $(left)s left" | tee -a "$LOG"
fi
echo "used $(( $(date +%s) - START ))s of ${BUDGET_S}s" | tee -a "$LOG"
rm -rf "$R"
